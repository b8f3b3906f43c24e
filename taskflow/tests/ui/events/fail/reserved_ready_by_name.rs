// event name `ready` is reserved
use taskflow::prelude::*;

#[events]
enum Progress {
    #[event(name = "ready")]
    Done,
}

fn main() {}
