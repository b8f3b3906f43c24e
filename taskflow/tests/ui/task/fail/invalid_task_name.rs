// invalid task name
use taskflow::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Input {
    n: u32,
}

#[task(name = "Count To N")]
async fn count(ctx: TaskContext<NoEvents>, input: Input) -> Result<u32, TaskError> {
    let _ = ctx;
    Ok(input.n)
}

fn main() {}
