// contains '#'
use taskflow::prelude::*;

#[events]
enum Progress {
    #[event(name = "tick#1")]
    Tick,
}

fn main() {}
