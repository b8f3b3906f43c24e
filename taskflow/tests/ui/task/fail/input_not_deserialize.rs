// required for `<count as Task>::Input` to implement `TaskInput`
use taskflow::prelude::*;

#[derive(serde::Serialize)]
struct Input {
    n: u32,
}

#[task]
async fn count(ctx: TaskContext<NoEvents>, input: Input) -> Result<u32, TaskError> {
    let _ = ctx;
    Ok(input.n)
}

fn main() {}
