//! Errors: what handlers return ([`TaskError`]), one enum per kind of operation, and the
//! umbrella [`Error`].

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::status::TaskState;

/// What a task handler returns on failure.
///
/// Converts from any `std::error::Error + Send + Sync + 'static` (so `?` works on most errors)
/// and therefore does not implement `Error` itself, as `anyhow::Error` does not. It carries a
/// machine-readable `code` (default `task_error`); a [`public`](Self::public) error's message is
/// never masked in production; a [`permanent`](Self::permanent) one skips remaining retries.
pub struct TaskError {
    kind: ErrorKind,
    message: String,
    code: Cow<'static, str>,
    public: bool,
    permanent: bool,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl TaskError {
    /// The default code of handler errors.
    pub const DEFAULT_CODE: &'static str = "task_error";

    /// An error with `message` and the default code.
    #[must_use]
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Handler,
            message: message.into(),
            code: Cow::Borrowed(Self::DEFAULT_CODE),
            public: false,
            permanent: false,
            source: None,
        }
    }

    /// An error that fails the run at once, whatever attempts remain.
    #[must_use]
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(message).into_permanent()
    }

    /// Marks this error permanent (no retry).
    #[must_use]
    pub fn into_permanent(mut self) -> Self {
        self.permanent = true;
        self
    }

    /// Marks this error's message safe to show to end users, even in production.
    #[must_use]
    pub fn public(mut self) -> Self {
        self.public = true;
        self
    }

    /// Sets the machine-readable code (snake_case by convention).
    #[must_use]
    pub fn with_code(mut self, code: impl Into<Cow<'static, str>>) -> Self {
        self.code = code.into();
        self
    }

    /// The human-readable message.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The machine-readable code.
    #[must_use]
    pub fn code(&self) -> &str {
        &self.code
    }

    /// Whether the message may be shown unmasked.
    #[must_use]
    pub fn is_public(&self) -> bool {
        self.public
    }

    /// Whether remaining retries are skipped.
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// The error this one was converted from, if any.
    #[must_use]
    pub fn source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }

    /// An error of the engine itself (bad event name, payload over the limit, storage):
    /// permanent, since retrying the same code meets it again.
    pub(crate) fn internal(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Internal,
            ..Self::new(message).with_code(code).into_permanent()
        }
    }

    /// The error a fenced-off attempt's `step`/`emit` returns after a stop, cancel or
    /// shutdown. Only the engine makes it: a handler returning an error with code `stopped`
    /// is an ordinary failure.
    pub(crate) fn stopped(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Stopped,
            ..Self::new(message).with_code(STOPPED_CODE).into_permanent()
        }
    }

    /// Whether this is the engine's stop error (see [`TaskError::stopped`]); the driver
    /// settles nothing for it.
    pub(crate) fn is_stop(&self) -> bool {
        self.kind == ErrorKind::Stopped
    }

    pub(crate) fn to_record(&self) -> ErrorRecord {
        ErrorRecord {
            message: self.message.clone(),
            code: self.code.to_string(),
            public: self.public,
        }
    }
}

/// Code of the error a fenced-off attempt's `step`/`emit` returns.
pub const STOPPED_CODE: &str = "stopped";

/// Where a [`TaskError`] comes from; decides control flow, unlike the code, which handlers set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorKind {
    /// Returned by the handler (or converted from its error).
    Handler,
    /// The engine fenced the attempt off (stop, cancel, shutdown).
    Stopped,
    /// The engine refused something the handler did.
    Internal,
}

impl<E> From<E> for TaskError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(err: E) -> Self {
        let mut t = TaskError::new(err.to_string());
        t.source = Some(Box::new(err));
        t
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskError")
            .field("kind", &self.kind)
            .field("code", &self.code)
            .field("message", &self.message)
            .field("public", &self.public)
            .field("permanent", &self.permanent)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// What a `#[task]` fn may return as its error: anything that converts into [`TaskError`]
/// (so `TaskError` itself, or any `std::error::Error + Send + Sync + 'static`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a task's error type",
    label = "a #[task] returns `Result<Output, E>` where `E: Into<TaskError>`",
    note = "return `TaskError`, or any `std::error::Error + Send + Sync + 'static` (it converts)"
)]
pub trait IntoTaskError: Into<TaskError> {}
impl<E: Into<TaskError>> IntoTaskError for E {}

/// A run's failure as persisted and reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// The message (masking, if any, happens at the HTTP edge, not here).
    pub message: String,
    /// The machine-readable code.
    pub code: String,
    /// Whether the message may be shown unmasked.
    pub public: bool,
}

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
}

impl fmt::Display for PayloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PayloadKind::Input => "input",
            PayloadKind::Output => "output",
            PayloadKind::StepResult => "step result",
            PayloadKind::Event => "event payload",
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
         one queue need the PostgreSQL store, the planned `postgres` feature, which this \
         version of taskflow does not have yet)"
    )]
    DataDirInUse {
        /// The database file.
        path: String,
    },
    /// The file was written by a newer taskflow.
    #[error(
        "data file schema version {found} is newer than this taskflow supports ({supported}); upgrade taskflow"
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
