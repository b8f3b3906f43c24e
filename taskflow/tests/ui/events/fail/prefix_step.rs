// uses a reserved prefix
use taskflow::prelude::*;

#[events]
enum Progress {
    #[event(name = "step:fetch")]
    Fetch,
}

fn main() {}
