// event name `suspended` is reserved
use taskflow::prelude::*;

#[events]
enum Progress {
    Suspended,
}

fn main() {}
