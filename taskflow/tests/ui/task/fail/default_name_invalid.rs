// the task name taken from the fn name is invalid
use taskflow::prelude::*;

#[task]
#[allow(non_snake_case)]
async fn Shout(ctx: TaskContext<NoEvents>, input: u32) -> Result<u32, TaskError> {
    let _ = ctx;
    Ok(input)
}

fn main() {}
