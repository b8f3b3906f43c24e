// unknown #[events] key `rename_all`; accepted keys: crate
use taskflow::prelude::*;

#[events(rename_all = "camelCase")]
enum Progress {
    Tick,
}

fn main() {}
