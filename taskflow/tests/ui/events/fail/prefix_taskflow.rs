// uses a reserved prefix
use taskflow::prelude::*;

#[events]
enum Progress {
    #[event(name = "taskflow.tick")]
    Tick,
}

fn main() {}
