// event name `cancelled` is reserved
use taskflow::prelude::*;

#[events]
enum Progress {
    #[event(name = "cancelled")]
    Done,
}

fn main() {}
