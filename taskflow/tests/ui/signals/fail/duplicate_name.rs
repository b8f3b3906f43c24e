// two variants have the wire name `approve`
use taskflow::prelude::*;

#[signals]
enum Approval {
    Approve,
    #[signal(name = "approve")]
    Accept,
}

fn main() {}
