// invalid signal name
use taskflow::prelude::*;

#[signals]
enum Approval {
    #[signal(name = "sign off")]
    SignOff,
}

fn main() {}
