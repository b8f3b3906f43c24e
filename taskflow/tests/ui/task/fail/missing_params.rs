// a #[task] takes two parameters
use taskflow::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Input {
    n: u32,
}

#[task]
async fn count() -> Result<u32, TaskError> {
    Ok(1)
}

fn main() {}
