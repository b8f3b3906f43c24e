// `version` is a whole number from 1 (the default) to 4294967295
use taskflow::prelude::*;

#[task(version = 0)]
async fn versioned(ctx: TaskContext<NoEvents>, input: u32) -> Result<u32, TaskError> {
    let _ = ctx;
    Ok(input)
}

fn main() {}
