// event name `error` is reserved
use taskflow::prelude::*;

#[events]
enum Progress {
    Error,
}

fn main() {}
