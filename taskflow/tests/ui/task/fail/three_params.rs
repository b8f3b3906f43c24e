// a #[task] takes exactly two parameters
use taskflow::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Input {
    n: u32,
}

#[task]
async fn count(ctx: TaskContext<NoEvents>, input: Input, extra: u32) -> Result<u32, TaskError> {
    let _ = (ctx, extra);
    Ok(input.n)
}

fn main() {}
