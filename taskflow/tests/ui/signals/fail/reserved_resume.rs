// signal name `resume` is reserved
use taskflow::prelude::*;

#[signals]
enum Control {
    Resume { by: String },
}

fn main() {}
