// a name may not be empty
use taskflow::prelude::*;

#[events]
enum Progress {
    #[event(name = "")]
    Tick,
}

fn main() {}
