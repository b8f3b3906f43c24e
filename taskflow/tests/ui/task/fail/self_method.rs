// a #[task] is a free `async fn`, not a method
use taskflow::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Input {
    n: u32,
}

struct Worker;

impl Worker {
    #[task]
    async fn count(&self, ctx: TaskContext<NoEvents>) -> Result<u32, TaskError> {
        let _ = ctx;
        Ok(1)
    }
}

fn main() {}
