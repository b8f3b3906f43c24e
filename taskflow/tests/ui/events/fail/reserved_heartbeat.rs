// event name `heartbeat` is reserved
use taskflow::prelude::*;

#[events]
enum Progress {
    Heartbeat,
}

fn main() {}
