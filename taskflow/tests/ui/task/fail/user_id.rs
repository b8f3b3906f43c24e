// `user_id` is not a task setting; remove it: identity only comes from the request's user context
use taskflow::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Input {
    n: u32,
}

#[task(user_id = "ann")]
async fn count(ctx: TaskContext<NoEvents>, input: Input) -> Result<u32, TaskError> {
    let _ = ctx;
    Ok(input.n)
}

fn main() {}
