// two variants have the wire name `tick`
use taskflow::prelude::*;

#[events]
enum Progress {
    Tick,
    #[event(name = "tick")]
    Tock,
}

fn main() {}
