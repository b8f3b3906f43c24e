// signal name `cancel` is reserved
use taskflow::prelude::*;

#[signals]
enum Control {
    Cancel,
}

fn main() {}
