// contains '\n'
use taskflow::prelude::*;

#[events]
enum Progress {
    #[event(name = "tick\n")]
    Tick,
}

fn main() {}
