//! Changed task code and runs already in flight. A run resumes only under the code version
//! that created it (`#[task(version = N)]`, recorded with the run); one of another version is
//! set aside by the builder's policy, with a log line saying what to do and a metric, and
//! [`TaskFlow::check_in_flight`] lists every run the current code cannot resume.

use super::{Inner, TaskFlow};
use crate::error::{ErrorRecord, StoreError};
use crate::ids::{IdempotencyKey, TaskId};
use crate::metrics::Metrics;
use crate::status::TaskState;
use crate::store::{Scan, TaskRecord};

/// The code (and suspension reason) of a run set aside because its task's version changed.
pub const INCOMPATIBLE_VERSION: &str = "incompatible_version";

/// What happens to an in-flight run created by a version of its task that this process does
/// not have ([`TaskFlowBuilder::incompatible_runs`](crate::TaskFlowBuilder::incompatible_runs)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IncompatibleRuns {
    /// Suspended with reason `incompatible_version` (the default): nothing is lost; deploy
    /// the version that created it and resume it there, or cancel it.
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

impl Inner {
    /// Why this process must not run `record`, if it must not.
    pub(super) fn incompatibility(&self, record: &TaskRecord) -> Option<String> {
        let Some(registered) = self.registry.get(&record.name) else {
            return Some(format!(
                "task `{}` is not registered in this process; register it (or deploy a process that does) to finish run {}",
                record.name, record.id
            ));
        };
        let have = registered.options.version.get();
        (record.version != have).then(|| {
            format!(
                "run {} of task `{}` was created by version {} of its code and this process has version {have}: deploy version {} of `{}` to finish it, or cancel it",
                record.id, record.name, record.version, record.version, record.name
            )
        })
    }

    /// Applies the builder's policy to a run of another version: suspends or fails it.
    pub(super) async fn set_aside(
        &self,
        record: &TaskRecord,
        problem: String,
    ) -> Result<(), StoreError> {
        Metrics::inc(&self.metrics.runs_incompatible);
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
    /// cannot resume: a task that is not registered here, or a run created by another version
    /// of its task. `build()` runs it and logs each one.
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
        Ok(runs
            .into_iter()
            .filter_map(|record| {
                let problem = self.inner.incompatibility(&record)?;
                Some(InFlightProblem {
                    task_id: record.id,
                    idempotency_key: record.ik,
                    task: record.name,
                    status: record.status,
                    problem,
                })
            })
            .collect())
    }
}
