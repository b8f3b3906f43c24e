// unknown #[task] key `priority`; accepted keys: name, events, signals, max_attempts, auto_recover, recovery_max_age, execute_mode, on_behalf_of, on_disconnect, version, crate
use taskflow::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Input {
    n: u32,
}

#[task(priority = 1)]
async fn count(ctx: TaskContext<NoEvents>, input: Input) -> Result<u32, TaskError> {
    let _ = ctx;
    Ok(input.n)
}

fn main() {}
