// required for `<count as Task>::Output` to implement `TaskOutput`
use taskflow::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Input {
    n: u32,
}

#[derive(serde::Deserialize)]
struct Output {
    n: u32,
}

#[task]
async fn count(ctx: TaskContext<NoEvents>, input: Input) -> Result<Output, TaskError> {
    let _ = ctx;
    Ok(Output { n: input.n })
}

fn main() {}
