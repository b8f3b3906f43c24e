//! The demo's three tasks.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use taskflow::prelude::*;

fn ranged<'de, D: Deserializer<'de>>(d: D, lo: u64, hi: u64, what: &str) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "{what} must be between {lo} and {hi}, got {v}"
        )))
    }
}

fn n_range<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    ranged(d, 1, 10_000, "n").map(|v| u32::try_from(v).unwrap_or(u32::MAX))
}

fn ms_range<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    ranged(d, 10, 60_000, "a duration in milliseconds")
}

/// Progress of `count-to-n`.
#[events]
#[derive(Debug, Clone)]
pub enum CountProgress {
    /// Step `value` of `total` is done.
    Tick {
        /// Steps done.
        value: u32,
        /// Steps in all.
        total: u32,
    },
}

/// Input of `count-to-n`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountInput {
    /// Distinguishes runs with otherwise equal input (part of the idempotency key).
    pub run_key: String,
    /// How far to count (1..=10000, default 10).
    #[serde(default = "default_n", deserialize_with = "n_range")]
    pub n: u32,
    /// How long each step sleeps (10..=60000 ms, default 1000).
    #[serde(default = "default_sleep", deserialize_with = "ms_range")]
    pub sleep_ms: u64,
}

fn default_n() -> u32 {
    10
}

fn default_sleep() -> u64 {
    1000
}

/// Output of `count-to-n`.
#[derive(Debug, Serialize, Deserialize)]
pub struct CountOutput {
    /// The number counted to.
    #[serde(rename = "final")]
    pub final_value: u32,
}

/// Counts to `n`, one durable step (a sleep) per number.
#[task(name = "count-to-n", max_attempts = 3)]
pub async fn count_to_n(
    ctx: TaskContext<CountProgress>,
    input: CountInput,
) -> Result<CountOutput, TaskError> {
    for i in 1..=input.n {
        let sleep = input.sleep_ms;
        ctx.step("count", || async move {
            tokio::time::sleep(Duration::from_millis(sleep)).await;
            Ok::<_, TaskError>(i)
        })
        .await?;
        ctx.emit(CountProgress::Tick {
            value: i,
            total: input.n,
        })
        .await?;
    }
    Ok(CountOutput {
        final_value: input.n,
    })
}

/// Progress of `pipeline-with-steps`.
#[events]
#[derive(Debug, Clone)]
pub enum PipelineProgress {
    /// A stage began.
    StageStarted {
        /// `extract`, `transform` or `load`.
        stage: String,
    },
    /// A stage finished.
    StageCompleted {
        /// The stage.
        stage: String,
        /// What it produced.
        result: serde_json::Value,
        /// `true` when the result was replayed from the log (the stage did not run again).
        from_cache: bool,
    },
}

/// Input of `pipeline-with-steps`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineInput {
    /// Distinguishes runs with otherwise equal input.
    pub run_key: String,
    /// How long each stage takes (10..=60000 ms, default 2500).
    #[serde(default = "default_stage", deserialize_with = "ms_range")]
    pub stage_ms: u64,
}

fn default_stage() -> u64 {
    2500
}

/// Output of `pipeline-with-steps`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PipelineOutput {
    /// Rows loaded.
    pub rows: u64,
    /// Their sum.
    pub sum: u64,
    /// Where they went.
    pub destination_id: String,
}

/// One stage's (simulated) work.
async fn stage_work(
    stage: &'static str,
    pause: Duration,
    run_key: String,
) -> Result<serde_json::Value, TaskError> {
    tokio::time::sleep(pause).await;
    Ok(match stage {
        "extract" => serde_json::json!({ "rows": (1..=100).collect::<Vec<u64>>() }),
        "transform" => serde_json::json!({ "rows": 100, "sum": 5050 }),
        _ => serde_json::json!({ "destination_id": format!("dest-{run_key}") }),
    })
}

/// Extract, transform, load: each stage a durable step.
#[task(name = "pipeline-with-steps", max_attempts = 3)]
pub async fn pipeline_with_steps(
    ctx: TaskContext<PipelineProgress>,
    input: PipelineInput,
) -> Result<PipelineOutput, TaskError> {
    let pause = Duration::from_millis(input.stage_ms);
    let mut results = Vec::new();
    for stage in ["extract", "transform", "load"] {
        ctx.emit(PipelineProgress::StageStarted {
            stage: stage.into(),
        })
        .await?;
        let key = input.run_key.clone();
        let (result, origin) = ctx
            .step_with_origin(stage, || stage_work(stage, pause, key))
            .await?;
        ctx.emit(PipelineProgress::StageCompleted {
            stage: stage.into(),
            result: result.clone(),
            from_cache: origin == StepOrigin::Replayed,
        })
        .await?;
        results.push(result);
    }
    Ok(PipelineOutput {
        rows: results[1]["rows"].as_u64().unwrap_or(0),
        sum: results[1]["sum"].as_u64().unwrap_or(0),
        destination_id: results[2]["destination_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    })
}

fn children_range<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    ranged(d, 1, 100, "children_n").map(|v| u32::try_from(v).unwrap_or(u32::MAX))
}

/// Progress of `approval-flow` (its waits add `waiting` / `wait_ended` on their own).
#[events]
#[derive(Debug, Clone)]
pub enum ApprovalProgress {
    /// The `prepare` step is done; the run now waits for a decision.
    Prepared,
}

/// What `approval-flow` waits for: `POST /api/tasks/{ik}/signals/decision`.
#[signals]
#[derive(Debug, Clone)]
pub enum Decision {
    /// `{"approve": bool, "by": string}`.
    Decision {
        /// Approve (`true`) or reject.
        approve: bool,
        /// Who decided.
        by: String,
    },
}

/// Input of `approval-flow`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalInput {
    /// Distinguishes runs with otherwise equal input.
    pub run_key: String,
    /// How far each child counts (1..=100, default 3).
    #[serde(default = "default_children", deserialize_with = "children_range")]
    pub children_n: u32,
    /// How long the run sleeps after an approval (10..=60000 ms, default 1000).
    #[serde(default = "default_sleep", deserialize_with = "ms_range")]
    pub sleep_ms: u64,
}

fn default_children() -> u32 {
    3
}

/// Prepares, waits for a person's decision, then (approved) sleeps durably and joins two
/// child `count-to-n` runs. Every wait survives a restart; nobody needs to watch it.
#[task(
    name = "approval-flow",
    events = ApprovalProgress,
    signals = Decision,
    on_disconnect = "continue"
)]
pub async fn approval_flow(
    ctx: TaskContext<ApprovalProgress>,
    input: ApprovalInput,
) -> Result<serde_json::Value, TaskError> {
    let key = input.run_key.clone();
    ctx.step("prepare", || async move {
        Ok::<_, TaskError>(format!("prepared {key}"))
    })
    .await?;
    ctx.emit(ApprovalProgress::Prepared).await?;
    let Decision::Decision { approve, by } = ctx.next_signal::<Decision>().await?;
    if !approve {
        return Ok(serde_json::json!({ "rejected_by": by }));
    }
    ctx.sleep(Duration::from_millis(input.sleep_ms)).await?;
    let mut children = Vec::new();
    for i in 1..=2 {
        let child = CountInput {
            run_key: format!("{}/child-{i}", input.run_key),
            n: input.children_n,
            sleep_ms: 10,
        };
        children.push(ctx.start_child(count_to_n, child).await?);
    }
    let outputs = ctx.join_all(&children).await?;
    Ok(serde_json::json!({
        "approved_by": by,
        "children": outputs
            .iter()
            .map(|o| serde_json::json!({ "final": o.final_value }))
            .collect::<Vec<_>>(),
    }))
}
