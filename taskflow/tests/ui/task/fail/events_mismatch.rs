// the context's events type `B` differs from `events = A`
use taskflow::prelude::*;

#[events]
enum A {
    Tick,
}

#[events]
enum B {
    Tock,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Input {
    n: u32,
}

#[task(events = A)]
async fn count(ctx: TaskContext<B>, input: Input) -> Result<u32, TaskError> {
    let _ = ctx;
    Ok(input.n)
}

fn main() {}
