// contains ' '
use taskflow::prelude::*;

#[events]
enum Progress {
    #[event(name = "tick tock")]
    Tick,
}

fn main() {}
