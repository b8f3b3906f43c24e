//! [`TaskError`]: what a handler returns on failure, and [`ErrorRecord`], a failure as the log
//! keeps it.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

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
