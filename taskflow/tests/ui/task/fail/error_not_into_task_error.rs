// cannot be a task's error type
use taskflow::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Input {
    n: u32,
}

struct MyError;

#[task]
async fn count(ctx: TaskContext<NoEvents>, input: Input) -> Result<u32, MyError> {
    let _ = ctx;
    Ok(input.n)
}

fn main() {}
