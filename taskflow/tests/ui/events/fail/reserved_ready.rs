// event name `ready` is reserved
use taskflow::prelude::*;

#[events]
enum Progress {
    Ready,
}

fn main() {}
