// invalid step name
use taskflow::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Input {
    n: u32,
}

#[task]
async fn count(ctx: TaskContext<NoEvents>, input: Input) -> Result<u32, TaskError> {
    let a = ctx.step("fetch rows", || async { Ok::<_, TaskError>(1) }).await?;
    Ok(input.n + a)
}

fn main() {}
