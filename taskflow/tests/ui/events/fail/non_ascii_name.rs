// contains 'é'
use taskflow::prelude::*;

#[events]
enum Progress {
    #[event(name = "café")]
    Tick,
}

fn main() {}
