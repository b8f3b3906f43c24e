// a tuple variant with 2 fields has no JSON shape
use taskflow::prelude::*;

#[events]
enum Progress {
    Moved(u32, u32),
}

fn main() {}
