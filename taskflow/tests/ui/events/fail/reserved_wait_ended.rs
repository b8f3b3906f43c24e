// event name `wait_ended` is reserved
use taskflow::prelude::*;

#[events]
enum Progress {
    WaitEnded,
}

fn main() {}
