// a #[task] fn cannot be generic
use taskflow::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Input {
    n: u32,
}

#[task]
async fn count<T: Send>(ctx: TaskContext<NoEvents>, input: Input) -> Result<u32, TaskError> {
    let _ = ctx;
    Ok(input.n)
}

fn main() {}
