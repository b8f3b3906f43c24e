//! The smallest durable task: ten steps, each checkpointed, with progress events.
//!
//! ```text
//! cargo run --example quickstart            # runs to completion
//! cargo run --example quickstart            # same input: attaches and replays, runs nothing
//! cargo run --example quickstart -- 42      # another input: a new run
//! ```
//!
//! Kill it (Ctrl-C or `kill -9`) half-way and start it again: it finishes without re-running
//! the steps that had completed. Data lives in `TASKFLOW_DATA_DIR` (default `.taskflow`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use taskflow::prelude::*;

/// The task's progress events.
#[events]
#[derive(Debug)]
enum Progress {
    /// One step finished.
    Step { index: u32, value: u64 },
}

#[derive(Debug, Serialize, Deserialize)]
struct Input {
    seed: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Output {
    total: u64,
}

/// Ten slow steps; each one's result is durable once `step` returns.
#[task(name = "slow-sum", max_attempts = 3)]
async fn slow_sum(ctx: TaskContext<Progress>, input: Input) -> Result<Output, TaskError> {
    let mut total = 0;
    for index in 0..10 {
        let (value, origin) = ctx
            .step_with_origin("work", || async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok::<_, TaskError>(input.seed * 10 + u64::from(index))
            })
            .await?;
        let how = match origin {
            StepOrigin::Executed => "ran",
            StepOrigin::Replayed => "replayed from the log",
        };
        println!("  step {index}: {value} ({how})");
        total += value;
        ctx.emit(Progress::Step { index, value }).await?;
    }
    Ok(Output { total })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seed = std::env::args().nth(1).map_or(Ok(7), |s| s.parse())?;
    let data_dir = std::env::var("TASKFLOW_DATA_DIR").unwrap_or_else(|_| ".taskflow".into());
    let flow = TaskFlow::builder()
        .data_dir(&data_dir)
        .register(slow_sum)
        .build()
        .await?;
    let recovered = flow.metrics().tasks_recovered;
    if recovered > 0 {
        println!("recovered {recovered} interrupted run(s) from {data_dir}");
    }
    let run = flow.start(slow_sum, Input { seed }).await?;
    println!(
        "{} run {} (key {})",
        if run.attached {
            "attached to"
        } else {
            "started"
        },
        run.task_id,
        run.idempotency_key
    );
    let mut events = flow.subscribe_typed(&run, SubscribeFrom::Start).await?;
    while let Some(event) = events.next().await {
        match event? {
            taskflow::TaskEvent::Progress { seq, event } => println!("event #{seq} {event:?}"),
            other => println!("{other:?}"),
        }
    }
    let output = flow.wait(&run).await?;
    println!("output: total = {}", output.total);
    flow.shutdown().await?;
    Ok(())
}
