// is 65 bytes; names are at most 64 bytes
use taskflow::prelude::*;

#[events]
enum Progress {
    #[event(name = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")]
    Tick,
}

fn main() {}
