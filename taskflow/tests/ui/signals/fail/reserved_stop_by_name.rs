// signal name `STOP` is reserved
use taskflow::prelude::*;

#[signals]
enum Control {
    #[signal(name = "STOP")]
    Halt,
}

fn main() {}
