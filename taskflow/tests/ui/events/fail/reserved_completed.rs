// event name `completed` is reserved
use taskflow::prelude::*;

#[events]
enum Progress {
    Completed,
}

fn main() {}
