// event name `failed` is reserved
use taskflow::prelude::*;

#[events]
enum Progress {
    #[event(name = "failed")]
    Done,
}

fn main() {}
