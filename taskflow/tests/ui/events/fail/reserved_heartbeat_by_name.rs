// event name `heartbeat` is reserved
use taskflow::prelude::*;

#[events]
enum Progress {
    #[event(name = "heartbeat")]
    Done,
}

fn main() {}
