// `on_disconnect` is "suspend"
use taskflow::prelude::*;

#[task(on_disconnect = "cancel")]
async fn watched(ctx: TaskContext<NoEvents>, input: u32) -> Result<u32, TaskError> {
    let _ = ctx;
    Ok(input)
}

fn main() {}
