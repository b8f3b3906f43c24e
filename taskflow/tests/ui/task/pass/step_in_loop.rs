// One step call site in a loop (keys fetch#0, fetch#1, ...) and distinct names elsewhere.
use taskflow::prelude::*;

#[task]
async fn pages(ctx: TaskContext<NoEvents>, n: u32) -> Result<u32, TaskError> {
    let mut total = 0;
    for page in 0..n {
        total += ctx.step("fetch", || async move { Ok::<_, TaskError>(page) }).await?;
    }
    let (extra, _origin) = ctx
        .step_with_origin("finish", || async { Ok::<_, TaskError>(1) })
        .await?;
    Ok(total + extra)
}

fn main() {}
