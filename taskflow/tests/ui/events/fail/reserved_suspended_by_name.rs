// event name `suspended` is reserved
use taskflow::prelude::*;

#[events]
enum Progress {
    #[event(name = "suspended")]
    Done,
}

fn main() {}
