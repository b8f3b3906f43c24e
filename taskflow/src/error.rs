//! Errors: one enum per kind of operation, and the umbrella [`Error`]. What handlers return,
//! [`TaskError`], lives in `task_error.rs`.

use std::fmt;
use std::time::Duration;

use crate::status::TaskState;

pub use crate::task_error::{ErrorRecord, IntoTaskError, STOPPED_CODE, TaskError};

/// Which payload exceeded its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadKind {
    /// A task's input.
    Input,
    /// A task's output.
    Output,
    /// One step's result.
    StepResult,
    /// One event's payload.
    Event,
    /// A signal's payload.
    Signal,
}

impl fmt::Display for PayloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PayloadKind::Input => "input",
            PayloadKind::Output => "output",
            PayloadKind::StepResult => "step result",
            PayloadKind::Event => "event payload",
            PayloadKind::Signal => "signal payload",
        })
    }
}

/// A payload over its configured limit; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{kind} is {size} bytes of JSON, over the limit of {limit} bytes; send less or raise the limit in TaskFlowBuilder::payload_limit"
)]
pub struct PayloadTooLarge {
    /// Which payload.
    pub kind: PayloadKind,
    /// Its size in bytes of JSON.
    pub size: usize,
    /// The limit in bytes.
    pub limit: usize,
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The underlying file or database failed.
    #[error("storage I/O failed: {0}")]
    Io(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// An earlier commit failed; the store refuses all writes until the process restarts.
    #[error("storage is fail-stopped after a failed commit; restart the process")]
    FailStopped,
    /// The write came from an attempt that was stopped, cancelled or superseded.
    #[error("the attempt was fenced off (stopped, cancelled or superseded)")]
    Fenced,
    /// Another run became the key's current run first (another process won the race).
    #[error("another run became the idempotency key's current run first")]
    KeyTaken,
    /// Another live process holds the run's lease.
    #[error("the run is claimed by another process")]
    ClaimedElsewhere,
    /// Starting the attempt would exceed a concurrency limit across the processes sharing
    /// the store; try again once a run finishes.
    #[error("the concurrency limit across processes is reached")]
    AtCapacity,
    /// The store was shut down or crashed.
    #[error("the store is closed")]
    Closed,
    /// Stored bytes did not decode.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub(crate) fn io(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Io(Box::new(e))
    }
}

/// Why [`TaskFlowBuilder::build`](crate::TaskFlowBuilder::build) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Another process (or another flow in this one) has the data dir open.
    #[error(
        "data dir {path} is already in use by another process; one redb file serves one process. \
         Stop the other process or give this one another data dir (several processes sharing \
         one queue need the PostgreSQL store: feature `postgres`, `TaskFlowBuilder::postgres`)"
    )]
    DataDirInUse {
        /// The database file.
        path: String,
    },
    /// The store (a redb file, a PostgreSQL schema) was written by a newer taskflow.
    #[error(
        "the store's schema version {found} is newer than this taskflow supports ({supported}); upgrade taskflow"
    )]
    SchemaTooNew {
        /// Version in the file.
        found: u64,
        /// Newest version this build reads.
        supported: u64,
    },
    /// One task name registered twice in production.
    #[error(
        "task `{0}` is registered twice; in production this is an error (development warns and keeps the last)"
    )]
    DuplicateTask(String),
    /// `TASKFLOW_ENV` holds something other than `production` or `development`.
    #[error("TASKFLOW_ENV is `{0}`; expected `production` or `development` (or unset)")]
    InvalidEnvironment(String),
    /// A task's name breaks the name grammar.
    #[error("invalid task name: {0}")]
    InvalidTaskName(#[from] crate::names::NameError),
    /// A builder setting is out of range.
    #[error("invalid setting: {0}")]
    InvalidSetting(String),
    /// Creating the data dir failed.
    #[error("cannot create data dir {path}: {source}")]
    Io {
        /// The directory.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The PostgreSQL store could not be opened: the URL, the server, the login or a
    /// privilege. Names the server, never the password.
    #[error("cannot open taskflow's PostgreSQL store at {server}: {reason}")]
    Postgres {
        /// `host:port, database D, user U`.
        server: String,
        /// What failed, in the server's words where it said something.
        reason: String,
    },
    /// The store failed while opening or recovering.
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// Why starting a task failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// No task with that name is registered.
    #[error("task `{0}` is not registered; add it with TaskFlowBuilder::register")]
    UnknownTask(String),
    /// The input did not serialise or decode.
    #[error("invalid input{}: {message}", path.as_ref().map(|p| format!(" at `{p}`")).unwrap_or_default())]
    InvalidInput {
        /// The JSON path of the offending field, when known.
        path: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// The input is over the payload limit.
    #[error(transparent)]
    PayloadTooLarge(#[from] PayloadTooLarge),
    /// Over the start rate limit; nothing was created.
    #[error("start rate limit reached; retry after {} s", retry_after.as_secs().max(1))]
    RateLimited {
        /// When a retry may succeed.
        retry_after: Duration,
    },
    /// Too many tasks are waiting for a slot; nothing was created.
    #[error(
        "{limit} tasks are already waiting to run; retry later or raise TaskFlowBuilder::queue_limit"
    )]
    QueueFull {
        /// The queue bound.
        limit: usize,
    },
    /// An `on_behalf_of` task was started without a user.
    #[error("task `{0}` runs on behalf of a user; start it through flow.as_user(&user)")]
    UserRequired(String),
    /// The flow is shutting down and admits no work.
    #[error("the flow is shutting down; retry on another instance or after restart")]
    ShuttingDown,
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// Why a query or control call (status, subscribe, stop, resume, cancel, list) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// No run with that key exists for the calling owner.
    #[error("no task with that idempotency key")]
    NotFound,
    /// The run's state does not allow the action.
    #[error("cannot {action} a task that is {state}")]
    InvalidState {
        /// The run's state.
        state: TaskState,
        /// What was asked.
        action: &'static str,
    },
    /// A stop or cancel reason over 512 characters.
    #[error(
        "reason is {len} characters; at most {} are allowed",
        taskflow_rules::MAX_REASON_CHARS
    )]
    ReasonTooLong {
        /// Its length in characters.
        len: usize,
    },
    /// The flow is shutting down.
    #[error("the flow is shutting down")]
    ShuttingDown,
    /// A signal name outside the step-name grammar, or one of the reserved names.
    #[error("invalid signal name: {0}")]
    InvalidName(crate::names::NameError),
    /// A signal the run's task does not accept: a name its `#[signals]` enum lacks, a
    /// payload that does not decode as that variant, or a malformed sender's key.
    #[error("{message}")]
    InvalidSignal {
        /// What is at fault (`name`, a header), when it is not the payload.
        path: Option<String>,
        /// What is wrong and what it accepts.
        message: String,
    },
    /// A signal payload over the payload limit.
    #[error(transparent)]
    PayloadTooLarge(PayloadTooLarge),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// Why [`TaskFlow::wait`](crate::TaskFlow::wait) did not return an output.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// No run with that key exists for the calling owner.
    #[error("no task with that idempotency key")]
    NotFound,
    /// The run failed.
    #[error("task failed: {} ({})", .0.message, .0.code)]
    Failed(ErrorRecord),
    /// The run was cancelled.
    #[error("task was cancelled: {reason}")]
    Cancelled {
        /// The cancel reason.
        reason: String,
    },
    /// The recorded output does not decode into the task's output type.
    #[error("recorded output does not decode: {0}")]
    Decode(#[source] serde_json::Error),
    /// The flow shut down before the run finished.
    #[error("the flow shut down before the task finished")]
    Closed,
    /// Another control error (one that waiting itself does not produce).
    #[error(transparent)]
    Control(ControlError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// Any taskflow error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// From building a flow.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// From starting a task.
    #[error(transparent)]
    Start(#[from] StartError),
    /// From a query or control call.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// From waiting for an output.
    #[error(transparent)]
    Wait(#[from] WaitError),
    /// From storage.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ControlError> for WaitError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::NotFound => WaitError::NotFound,
            ControlError::Storage(s) => WaitError::Storage(s),
            ControlError::ShuttingDown => WaitError::Closed,
            other => WaitError::Control(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_errors_convert_to_wait_errors_without_loss() {
        assert!(matches!(
            WaitError::from(ControlError::NotFound),
            WaitError::NotFound
        ));
        assert!(matches!(
            WaitError::from(ControlError::ShuttingDown),
            WaitError::Closed
        ));
        assert!(matches!(
            WaitError::from(ControlError::Storage(StoreError::FailStopped)),
            WaitError::Storage(StoreError::FailStopped)
        ));
        assert!(matches!(
            WaitError::from(ControlError::ReasonTooLong { len: 600 }),
            WaitError::Control(ControlError::ReasonTooLong { len: 600 })
        ));
    }
}
