// event name `error` is reserved
use taskflow::prelude::*;

#[events]
enum Progress {
    #[event(name = "error")]
    Done,
}

fn main() {}
