// Every accepted #[task] key at once.
use taskflow::Task;
use taskflow::prelude::*;

#[events]
pub enum Progress {
    Tick { value: u32 },
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Input {
    pub n: u32,
}

/// Counts.
#[task(
    name = "count-to-n",
    events = Progress,
    max_attempts = 5,
    auto_recover = false,
    recovery_max_age = "2h",
    execute_mode = at_most_once,
    on_behalf_of = true,
    on_disconnect = "continue",
    version = 3,
    crate = "::taskflow"
)]
pub async fn count(ctx: TaskContext<Progress>, input: Input) -> Result<u32, TaskError> {
    ctx.emit(Progress::Tick { value: input.n }).await?;
    Ok(input.n)
}

#[task(on_behalf_of, execute_mode = "at_least_once", recovery_max_age = "0s")]
async fn flags(_ctx: TaskContext<NoEvents>, _input: ()) -> Result<(), TaskError> {
    Ok(())
}

fn main() {
    assert_eq!(count::NAME, "count-to-n");
    let o = count.options();
    assert_eq!(o.max_attempts.get(), 5);
    assert_eq!(o.version.get(), 3);
    assert!(!o.auto_recover && o.on_behalf_of);
    assert_eq!(o.recovery_max_age, std::time::Duration::from_secs(7200));
    assert_eq!(o.on_disconnect, taskflow::OnDisconnect::Continue);
    assert_eq!(flags.options().on_disconnect, taskflow::OnDisconnect::Suspend);
    assert!(flags.options().on_behalf_of);
    assert!(flags.options().recovery_max_age.is_zero());
}
