//! [`ExecuteTaskSettings`]: per-call settings of the HTTP bridge: the start options of a new
//! run plus the options of its stream.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::engine::StartOptions;
use crate::ids::Seq;
use crate::task::ExecuteMode;

/// Per-call settings of `execute_task` (the SSE bridge): the [`StartOptions`] of a new run
/// (ignored when the call attaches) and the options of its stream. Build with [`Default`]
/// and the builder methods; the fields are private so that settings that do not exist here
/// (`retry`, `cache`, `timeout`, `stream`, `user_id`) cannot be written, and calling those
/// names is a compile error that says what to use instead.
///
/// ```
/// use std::num::NonZeroU32;
/// use std::time::Duration;
/// use taskflow::ExecuteTaskSettings;
///
/// let five = NonZeroU32::new(5).unwrap();
/// let settings = ExecuteTaskSettings::default()
///     .disconnect_grace(Duration::from_secs(10))
///     .max_attempts(five);
/// assert_eq!(settings.get_max_attempts(), Some(five));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct ExecuteTaskSettings {
    start: StartOptions,
    stream: StreamOptions,
}

/// How the bridge streams one run to one client.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StreamOptions {
    /// `None`: the task's `on_disconnect`.
    cancel_on_disconnect: Option<bool>,
    disconnect_grace: Duration,
    js_safe_integers: bool,
    keep_alive: Duration,
    last_event_id: Option<Seq>,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            cancel_on_disconnect: None,
            disconnect_grace: Duration::from_secs(5),
            js_safe_integers: true,
            keep_alive: Duration::from_secs(15),
            last_event_id: None,
        }
    }
}

impl Default for ExecuteTaskSettings {
    fn default() -> Self {
        Self {
            start: StartOptions::new(),
            stream: StreamOptions::default(),
        }
    }
}

impl ExecuteTaskSettings {
    /// Suspend a run this call starts, with reason `client_disconnected`, when its last SSE
    /// client has been gone for the grace period (`true`), or let it run on (`false`). It
    /// suspends, never cancels: a re-POST or `resume` continues it. Default: the task's
    /// `on_disconnect` (itself `"suspend"` unless the task says `"continue"`).
    pub fn cancel_on_disconnect(mut self, on: bool) -> Self {
        self.stream.cancel_on_disconnect = Some(on);
        self
    }

    /// How long a run waits for an SSE client to re-attach before it is stopped (default 5 s).
    pub fn disconnect_grace(mut self, grace: Duration) -> Self {
        self.stream.disconnect_grace = grace;
        self
    }

    /// Overrides the task's execute mode for a new run.
    pub fn execute_mode(mut self, mode: ExecuteMode) -> Self {
        self.start = self.start.execute_mode(mode);
        self
    }

    /// Overrides the task's `max_attempts` for a new run.
    pub fn max_attempts(mut self, n: NonZeroU32) -> Self {
        self.start = self.start.max_attempts(n);
        self
    }

    /// Write integers outside ±(2^53 − 1) as strings (default on), so JavaScript clients do not
    /// round them.
    pub fn js_safe_integers(mut self, on: bool) -> Self {
        self.stream.js_safe_integers = on;
        self
    }

    /// Silence after which a `: hb` comment keeps the connection alive (default 15 s).
    pub fn keep_alive(mut self, every: Duration) -> Self {
        self.stream.keep_alive = every;
        self
    }

    /// Resume after this sequence number (the request's `Last-Event-ID`, parsed with
    /// [`parse_last_event_id`](crate::sse::parse_last_event_id)); `None` streams the run from
    /// its start. The task routes set it from the header or the `last_event_id` query.
    pub fn last_event_id(mut self, last: Option<Seq>) -> Self {
        self.stream.last_event_id = last;
        self
    }

    /// The start options of a new run.
    pub fn start_options(&self) -> &StartOptions {
        &self.start
    }

    /// The resume position.
    #[must_use]
    pub fn get_last_event_id(&self) -> Option<Seq> {
        self.stream.last_event_id
    }

    /// Whether disconnect suspends the run, if this call says (`None`: the task decides).
    #[must_use]
    pub fn get_cancel_on_disconnect(&self) -> Option<bool> {
        self.stream.cancel_on_disconnect
    }

    /// The disconnect grace.
    #[must_use]
    pub fn get_disconnect_grace(&self) -> Duration {
        self.stream.disconnect_grace
    }

    /// The execute mode override.
    #[must_use]
    pub fn get_execute_mode(&self) -> Option<ExecuteMode> {
        self.start.execute_mode
    }

    /// The attempts override.
    #[must_use]
    pub fn get_max_attempts(&self) -> Option<NonZeroU32> {
        self.start.max_attempts
    }

    /// Whether large integers are sent as strings.
    #[must_use]
    pub fn get_js_safe_integers(&self) -> bool {
        self.stream.js_safe_integers
    }

    /// The keep-alive interval.
    #[must_use]
    pub fn get_keep_alive(&self) -> Duration {
        self.stream.keep_alive
    }

    /// Not a setting: see the compile error.
    #[doc(hidden)]
    pub fn retry<T: not_a_setting::Retry>(self, _: T) -> Self {
        self
    }

    /// Not a setting: see the compile error.
    #[doc(hidden)]
    pub fn cache<T: not_a_setting::Cache>(self, _: T) -> Self {
        self
    }

    /// Not a setting: see the compile error.
    #[doc(hidden)]
    pub fn timeout<T: not_a_setting::Timeout>(self, _: T) -> Self {
        self
    }

    /// Not a setting: see the compile error.
    #[doc(hidden)]
    pub fn stream<T: not_a_setting::Stream>(self, _: T) -> Self {
        self
    }

    /// Not a setting: see the compile error.
    #[doc(hidden)]
    pub fn user_id<T: not_a_setting::UserId>(self, _: T) -> Self {
        self
    }
}

/// Bounds that nothing implements, and nothing outside taskflow can (they are sealed):
/// calling `retry`, `cache`, `timeout`, `stream` or `user_id` on [`ExecuteTaskSettings`] fails
/// to compile with the explanation below.
#[doc(hidden)]
pub mod not_a_setting {
    mod sealed {
        /// Implemented by nothing; makes the traits below impossible to implement.
        pub trait Sealed {}
    }

    /// Never implemented.
    #[diagnostic::on_unimplemented(
        message = "`retry` is not an ExecuteTaskSettings setting",
        label = "use `.max_attempts(n)`",
        note = "attempts that end in `Err` or a panic are retried with backoff up to `max_attempts`; crashes never use one up"
    )]
    pub trait Retry: sealed::Sealed {}

    /// Never implemented.
    #[diagnostic::on_unimplemented(
        message = "`cache` is not an ExecuteTaskSettings setting",
        label = "remove it",
        note = "the idempotency key (task + input + user) already deduplicates: a repeated request attaches to the existing run"
    )]
    pub trait Cache: sealed::Sealed {}

    /// Never implemented.
    #[diagnostic::on_unimplemented(
        message = "`timeout` is not an ExecuteTaskSettings setting",
        label = "remove it",
        note = "stop a run cooperatively with `flow.stop(..)`; disconnects are handled by `cancel_on_disconnect` and `disconnect_grace`"
    )]
    pub trait Timeout: sealed::Sealed {}

    /// Never implemented.
    #[diagnostic::on_unimplemented(
        message = "`stream` is not an ExecuteTaskSettings setting",
        label = "remove it",
        note = "every `execute_task` response streams the task's `#[events]` as Server-Sent Events"
    )]
    pub trait Stream: sealed::Sealed {}

    /// Never implemented.
    #[diagnostic::on_unimplemented(
        message = "`user_id` is not an ExecuteTaskSettings setting",
        label = "remove it",
        note = "identity only comes from the request's user context (the `UserContext` extractor or `flow.as_user(&user)`)"
    )]
    pub trait UserId: sealed::Sealed {}
}
