// event name `completed` is reserved
use taskflow::prelude::*;

#[events]
enum Progress {
    #[event(name = "completed")]
    Done,
}

fn main() {}
