//! Both macros under the strictest lints a user might set, so `cargo clippy` on the workspace
//! lints their expansions (trybuild cases are not linted). Run it: it prints a schema.
#![deny(warnings, missing_docs, clippy::pedantic)]

use serde::{Deserialize, Serialize};
use taskflow::prelude::*;

/// A payload with its own type.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StageInfo {
    /// The stage's name.
    pub stage: String,
    /// Rows it handled.
    pub rows: u64,
}

/// Progress of an import.
#[events]
#[derive(Debug, Clone)]
pub enum Progress {
    /// A tick.
    Tick {
        /// Done so far.
        value: u32,
        /// Of how many.
        total: u32,
    },
    /// A stage finished.
    #[event(name = "stage-done")]
    StageDone(StageInfo),
    /// The import started.
    Started,
}

/// The import's input.
#[derive(Debug, Serialize, Deserialize)]
pub struct Input {
    /// How many rows.
    pub rows: u32,
}

/// Imports rows, one durable step per row.
#[task(name = "import", events = Progress, max_attempts = 2, recovery_max_age = "10m")]
pub async fn import(ctx: TaskContext<Progress>, input: Input) -> Result<u64, TaskError> {
    ctx.emit(Progress::Started).await?;
    let mut total = 0;
    for row in 0..input.rows {
        total += ctx
            .step("row", || async move { Ok::<_, TaskError>(u64::from(row)) })
            .await?;
        ctx.emit(Progress::Tick {
            value: row + 1,
            total: input.rows,
        })
        .await?;
    }
    ctx.emit(Progress::StageDone(StageInfo {
        stage: "load".into(),
        rows: total,
    }))
    .await?;
    Ok(total)
}

/// A task that emits nothing and fails with a std error.
#[task]
pub async fn noop(_ctx: TaskContext<NoEvents>, _input: ()) -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {
    let _ = (import, noop);
    println!("{}", Progress::typescript());
}
