// future cannot be sent between threads safely
use taskflow::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Input {
    n: u32,
}

#[task]
async fn count(ctx: TaskContext<NoEvents>, input: Input) -> Result<u32, TaskError> {
    let not_send = std::rc::Rc::new(input.n);
    let n = ctx.step("double", || async move { Ok::<_, TaskError>(2) }).await?;
    Ok(*not_send * n)
}

fn main() {}
