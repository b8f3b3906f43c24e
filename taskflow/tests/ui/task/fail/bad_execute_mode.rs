// `execute_mode` is `at_least_once` (the default) or `at_most_once`
use taskflow::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Input {
    n: u32,
}

#[task(execute_mode = exactly_once)]
async fn count(ctx: TaskContext<NoEvents>, input: Input) -> Result<u32, TaskError> {
    let _ = ctx;
    Ok(input.n)
}

fn main() {}
