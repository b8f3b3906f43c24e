// event name `COMPLETED` is reserved
use taskflow::prelude::*;

#[events]
enum Progress {
    #[event(name = "COMPLETED")]
    Done,
}

fn main() {}
