// event name `failed` is reserved
use taskflow::prelude::*;

#[events]
enum Progress {
    Failed,
}

fn main() {}
