// `Progress` is not a #[signals] enum
use taskflow::prelude::*;

#[events]
pub enum Progress {
    Tick,
}

#[task(signals = Progress)]
async fn review(_ctx: TaskContext<NoEvents>, _doc: String) -> Result<(), TaskError> {
    Ok(())
}

fn main() {}
