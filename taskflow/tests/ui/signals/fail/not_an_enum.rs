// #[signals] goes on an enum
use taskflow::prelude::*;

#[signals]
struct Approval {
    by: String,
}

fn main() {}
