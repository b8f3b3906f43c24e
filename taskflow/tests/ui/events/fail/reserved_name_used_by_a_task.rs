// event name `completed` is reserved
// One mistake, one error: the task and the calls that use the enum add none of their own.
use taskflow::prelude::*;

#[events]
pub enum Progress {
    Completed,
    Tick { n: u32 },
}

#[task(events = Progress)]
async fn uses_it(ctx: TaskContext<Progress>, n: u32) -> Result<u32, TaskError> {
    ctx.emit(Progress::Tick { n }).await?;
    Ok(n)
}

fn main() {
    let _ = Progress::typescript();
    let _ = uses_it;
}
