// a #[task] returns `Result<Output, Error>`
use taskflow::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Input {
    n: u32,
}

#[task]
async fn count(ctx: TaskContext<NoEvents>, input: Input) -> u32 {
    let _ = ctx;
    input.n
}

fn main() {}
