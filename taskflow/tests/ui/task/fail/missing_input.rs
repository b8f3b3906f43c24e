// a #[task] takes its input as the second parameter
use taskflow::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Input {
    n: u32,
}

#[task]
async fn count(ctx: TaskContext<NoEvents>) -> Result<u32, TaskError> {
    let _ = ctx;
    Ok(1)
}

fn main() {}
