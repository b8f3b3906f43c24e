// unknown #[signal] key `rename`; accepted keys: name
use taskflow::prelude::*;

#[signals]
enum Approval {
    #[signal(rename = "ok")]
    Approve,
}

fn main() {}
