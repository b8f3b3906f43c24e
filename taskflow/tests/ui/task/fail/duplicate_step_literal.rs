// step name "fetch" is already used at another call site in this task
use taskflow::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Input {
    n: u32,
}

#[task]
async fn count(ctx: TaskContext<NoEvents>, input: Input) -> Result<u32, TaskError> {
    let a = ctx.step("fetch", || async { Ok::<_, TaskError>(1) }).await?;
    let b = ctx.step("fetch", || async { Ok::<_, TaskError>(2) }).await?;
    Ok(input.n + a + b)
}

fn main() {}
