// unknown #[event] key `rename`; accepted keys: name
use taskflow::prelude::*;

#[events]
enum Progress {
    #[event(rename = "tock")]
    Tick,
}

fn main() {}
