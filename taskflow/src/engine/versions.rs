//! Changed task code and runs already in flight. A run resumes only under the code version
//! that created it (`#[task(version = N)]`, recorded with the run); one of another version is
//! set aside by the builder's policy, with a log line saying what to do and a metric; so is a
//! run whose log holds a step the current code no longer has (the names `#[task]` records),
//! and [`TaskFlow::check_in_flight`] lists every run the current code cannot resume.

use std::sync::Arc;

use super::{Inner, TaskFlow};
use crate::error::{ErrorRecord, StoreError};
use crate::ids::{IdempotencyKey, TaskId};
use crate::metrics::Metrics;
use crate::status::TaskState;
use crate::store::{Scan, TaskRecord};

/// The code (and suspension reason) of a run set aside because its task's code changed: another
/// version created it, or its log holds a step the current code no longer has.
pub const INCOMPATIBLE_VERSION: &str = "incompatible_version";

/// What happens to an in-flight run this process's code cannot resume: created by a version
/// of its task that this process does not have, or holding a step its code no longer has
/// ([`TaskFlowBuilder::incompatible_runs`](crate::TaskFlowBuilder::incompatible_runs)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IncompatibleRuns {
    /// Suspended with reason `incompatible_version` (the default): nothing
    /// is lost; deploy the code that created it and resume it there, or cancel it.
    #[default]
    Suspend,
    /// Failed with code `incompatible_version`.
    Fail,
}

/// An in-flight run the current code cannot safely resume, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InFlightProblem {
    /// The run.
    pub task_id: TaskId,
    /// Its key.
    pub idempotency_key: IdempotencyKey,
    /// Its task's name.
    pub task: String,
    /// Its state (`created`, `running` or `suspended`).
    pub status: TaskState,
    /// What is wrong, in words that say what to do.
    pub problem: String,
}

/// Why this process must not run a run.
pub(super) struct Incompatible {
    /// What changed (its own metric).
    kind: Change,
    /// What is wrong, in words that say what to do.
    problem: String,
}

/// What about the code changed under a run.
#[derive(PartialEq, Eq)]
enum Change {
    /// Not registered here, or another version.
    Version,
    /// A step the run's log holds is gone.
    MissingStep,
}

impl Inner {
    /// Why this process must not run `record`, if it must not: its task is not registered
    /// here, another version of its code created it, or its log holds a step this code does
    /// not have (`TaskOptions::known_steps`).
    pub(super) async fn incompatibility(
        &self,
        record: &TaskRecord,
    ) -> Result<Option<Incompatible>, StoreError> {
        let Some(registered) = self.registry.get(&record.name) else {
            return Ok(Some(Incompatible {
                kind: Change::Version,
                problem: format!(
                    "task `{}` is not registered in this process; register it (or deploy a process that does) to finish run {}",
                    record.name, record.id
                ),
            }));
        };
        let have = registered.options.version.get();
        if record.version != have {
            return Ok(Some(Incompatible {
                kind: Change::Version,
                problem: format!(
                    "run {} of task `{}` was created by version {} of its code and this process has version {have}: deploy version {} of `{}` to finish it, or cancel it",
                    record.id, record.name, record.version, record.version, record.name
                ),
            }));
        }
        // A run that never started an attempt has no steps to check.
        let Some(known) = registered
            .options
            .known_steps
            .filter(|_| record.attempt > 0)
        else {
            return Ok(None);
        };
        let steps = self.store.steps(record.id).await?;
        let missing = steps
            .iter()
            .map(|(key, _)| key)
            // `$`-names are the engine's own (a sleep's records), never the handler's.
            .find(|key| !key.name().starts_with('$') && !known.contains(&key.name()));
        Ok(missing.map(|key| Incompatible {
            kind: Change::MissingStep,
            problem: format!(
                "run {} of task `{}` has a committed result for step `{key}` and this code has no step `{}` (renamed or removed without a new #[task(version = N)]): deploy the code that has it to finish the run, or cancel it; raise the task's version when you change its steps",
                record.id,
                record.name,
                key.name()
            ),
        }))
    }

    /// Applies the builder's policy to a run this process must not run: suspends or fails it.
    pub(super) async fn set_aside(
        self: &Arc<Self>,
        record: &TaskRecord,
        why: Incompatible,
    ) -> Result<(), StoreError> {
        let Incompatible { kind, problem } = why;
        if kind == Change::MissingStep {
            Metrics::inc(&self.metrics.runs_missing_step);
        } else {
            Metrics::inc(&self.metrics.runs_incompatible);
        }
        match self.config.incompatible_runs {
            IncompatibleRuns::Suspend => {
                tracing::warn!(task_id = %record.id, task = %record.name, "{problem}; suspended");
                self.suspend_run(record, INCOMPATIBLE_VERSION).await
            }
            IncompatibleRuns::Fail => {
                tracing::warn!(task_id = %record.id, task = %record.name, "{problem}; failed");
                let error = ErrorRecord {
                    message: problem,
                    code: INCOMPATIBLE_VERSION.to_owned(),
                    public: false,
                };
                self.fail_run(record, error).await
            }
        }
    }
}

impl TaskFlow {
    /// Lists the runs in flight (`created`, `running`, `suspended`) that this process's code
    /// cannot resume: a task that is not registered here, a run created by another version
    /// of its task, or one whose log holds a step the task no longer has. `build()` runs it
    /// and logs each one.
    ///
    /// # Errors
    /// Reading the store failed.
    pub async fn check_in_flight(&self) -> Result<Vec<InFlightProblem>, StoreError> {
        let runs = self
            .inner
            .store
            .scan(Scan {
                states: vec![TaskState::Created, TaskState::Running, TaskState::Suspended],
                current_only: true,
                ..Scan::default()
            })
            .await?;
        let mut problems = Vec::new();
        for record in runs {
            if let Some(why) = self.inner.incompatibility(&record).await? {
                problems.push(InFlightProblem {
                    task_id: record.id,
                    idempotency_key: record.ik,
                    task: record.name,
                    status: record.status,
                    problem: why.problem,
                });
            }
        }
        Ok(problems)
    }
}
