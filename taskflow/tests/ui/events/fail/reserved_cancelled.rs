// event name `cancelled` is reserved
use taskflow::prelude::*;

#[events]
enum Progress {
    Cancelled,
}

fn main() {}
