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
use taskflow::{
    EventDecodeError, Events, StepOrigin, SubscribeFrom, Task, TaskContext, TaskError, TaskFlow,
};

/// The task's progress events.
#[derive(Debug)]
enum Progress {
    Step { index: u32, value: u64 },
}

impl Events for Progress {
    const NAMES: &'static [&'static str] = &["step"];

    fn name(&self) -> &'static str {
        "step"
    }

    fn to_payload(&self) -> Result<serde_json::Value, serde_json::Error> {
        let Progress::Step { index, value } = self;
        Ok(serde_json::json!({ "index": index, "value": value }))
    }

    fn decode(name: &str, payload: serde_json::Value) -> Result<Self, EventDecodeError> {
        #[derive(Deserialize)]
        struct Payload {
            index: u32,
            value: u64,
        }
        match name {
            "step" => serde_json::from_value::<Payload>(payload)
                .map(|p| Progress::Step {
                    index: p.index,
                    value: p.value,
                })
                .map_err(|source| EventDecodeError::Payload {
                    name: name.to_owned(),
                    source,
                }),
            other => Err(EventDecodeError::UnknownName(other.to_owned())),
        }
    }
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
#[derive(Clone, Copy)]
struct SlowSum;

impl Task for SlowSum {
    const NAME: &'static str = "slow-sum";
    type Input = Input;
    type Output = Output;
    type Events = Progress;

    async fn run(self, ctx: TaskContext<Progress>, input: Input) -> Result<Output, TaskError> {
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
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seed = std::env::args().nth(1).map_or(Ok(7), |s| s.parse())?;
    let data_dir = std::env::var("TASKFLOW_DATA_DIR").unwrap_or_else(|_| ".taskflow".into());
    let flow = TaskFlow::builder()
        .data_dir(&data_dir)
        .register(SlowSum)
        .build()
        .await?;
    let recovered = flow.metrics().tasks_recovered;
    if recovered > 0 {
        println!("recovered {recovered} interrupted run(s) from {data_dir}");
    }
    let run = flow.start(SlowSum, Input { seed }).await?;
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
    let mut events = flow
        .subscribe(&run.idempotency_key, SubscribeFrom::Start)
        .await?;
    while let Some(event) = events.next().await {
        let event = event?;
        println!("event #{} {} {}", event.seq, event.name, event.data);
    }
    let output = flow.wait(&run).await?;
    println!("output: total = {}", output.total);
    flow.shutdown().await?;
    Ok(())
}
