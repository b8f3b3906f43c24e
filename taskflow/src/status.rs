//! What callers read back: run states, status snapshots, stored events.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::ErrorRecord;
use crate::identity::UserId;
use crate::ids::{IdempotencyKey, Seq, TaskId};

/// The state of one run (ordered as its lifecycle goes: created first, cancelled last).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Admitted, waiting for a concurrency slot.
    Created,
    /// An attempt is running or a retry is scheduled.
    Running,
    /// Stopped; `resume` or a new submission of the same key continues it.
    Suspended,
    /// Finished with an output.
    Completed,
    /// Finished with an error.
    Failed,
    /// Cancelled; final.
    Cancelled,
}

impl TaskState {
    /// Every state, in lifecycle order.
    pub const ALL: [Self; 6] = [
        Self::Created,
        Self::Running,
        Self::Suspended,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    /// `completed`, `failed` or `cancelled`.
    #[must_use]
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// The snake_case name used on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Suspended => "suspended",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of one run, as [`TaskFlow::status`](crate::TaskFlow::status) returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskStatus {
    /// The run's id.
    pub task_id: TaskId,
    /// The submission's key.
    pub idempotency_key: IdempotencyKey,
    /// The task's registered name.
    pub task: String,
    /// The owner (`None` = the service identity).
    pub owner: Option<UserId>,
    /// The state.
    pub status: TaskState,
    /// Attempts started so far (1 for the first).
    pub attempt: u32,
    /// Attempts that ended in an error or a panic.
    pub failed_attempts: u32,
    /// The attempt budget.
    pub max_attempts: u32,
    /// When the run was created.
    pub created_at: Timestamp,
    /// When the run's record last changed.
    pub updated_at: Timestamp,
    /// The newest event's sequence number under this key.
    pub last_seq: Seq,
    /// The output, once completed.
    pub output: Option<serde_json::Value>,
    /// The error, once failed.
    pub error: Option<ErrorRecord>,
    /// Why it is suspended (only while suspended).
    pub suspended_reason: Option<String>,
    /// Why it was cancelled (only once cancelled).
    pub cancel_reason: Option<String>,
    /// What it waits for while parked in a durable wait (`ctx.sleep`): `{"kind": "sleep",
    /// "until": "<RFC 3339>", "until_ms": ...}`; `null` otherwise.
    #[serde(default)]
    pub waiting: Option<crate::wait::Waiting>,
    /// The child runs it started with `ctx.start_child`, in order (only
    /// [`TaskFlow::status`](crate::TaskFlow::status) fills it; listings leave it empty).
    #[serde(default)]
    pub children: Vec<ChildStatus>,
}

/// A child run in its parent's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChildStatus {
    /// The child's key (derived from the parent run and the call's position).
    pub idempotency_key: IdempotencyKey,
    /// The child's task.
    pub task: String,
    /// Its state (`None` once its record was collected).
    pub status: Option<TaskState>,
}

/// One entry of a run's event log: a user event or a lifecycle event
/// (`suspended`, `completed`, `failed`, `cancelled`, `waiting`, `wait_ended`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Gapless sequence number per idempotency key.
    pub seq: Seq,
    /// The wire name.
    pub name: String,
    /// The JSON payload.
    pub data: serde_json::Value,
}

impl StoredEvent {
    /// Whether the engine wrote it (as opposed to the handler's `emit`).
    #[must_use]
    pub fn is_lifecycle(&self) -> bool {
        crate::lifecycle::is_lifecycle_name(&self.name)
    }

    /// Whether it ends the run (`completed`, `failed`, `cancelled`).
    #[must_use]
    pub fn is_terminal(&self) -> bool {
        crate::lifecycle::is_terminal_name(&self.name)
    }

    /// The event as a [`Lifecycle`](crate::Lifecycle), `None` for a user event.
    ///
    /// # Errors
    /// When a lifecycle event's payload does not have its shape.
    #[must_use]
    pub fn lifecycle(&self) -> Option<Result<crate::Lifecycle, serde_json::Error>> {
        crate::Lifecycle::decode(&self.name, &self.data)
    }
}

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeFrom {
    /// The first event of the current run.
    Start,
    /// Just after this sequence number (`Last-Event-ID`).
    After(Seq),
}

/// Which runs [`TaskFlow::list`](crate::TaskFlow::list) returns (always only the caller's own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListFilter {
    /// Only runs in one of these states (all when empty).
    pub states: Vec<TaskState>,
    /// Only runs of this task name.
    pub task: Option<String>,
    /// At most this many, newest first (default 100).
    pub limit: Option<usize>,
    /// Only runs older than this one: the `task_id` of the last run of the previous page.
    pub before: Option<TaskId>,
}

impl ListFilter {
    /// Every state, every task, the default limit.
    #[must_use]
    pub fn all() -> Self {
        Self::default()
    }

    /// Keeps only runs in `state` (may be called several times).
    #[must_use]
    pub fn state(mut self, state: TaskState) -> Self {
        self.states.push(state);
        self
    }

    /// Keeps only runs of task `name`.
    #[must_use]
    pub fn task(mut self, name: impl Into<String>) -> Self {
        self.task = Some(name.into());
        self
    }

    /// Returns at most `n` runs.
    #[must_use]
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Continues a listing after `last`, the `task_id` of the last run of the previous page
    /// (runs are listed newest first, so these are older ones).
    #[must_use]
    pub fn before(mut self, last: TaskId) -> Self {
        self.before = Some(last);
        self
    }
}
