// event name `waiting` is reserved
use taskflow::prelude::*;

#[events]
enum Progress {
    Waiting,
}

fn main() {}
