//! The contracts a task and its events fulfil. `#[task]` and `#[events]` generate them; they can
//! also be implemented by hand.

use std::future::Future;
use std::num::NonZeroU32;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use taskflow_rules::defaults;

use crate::context::TaskContext;
use crate::error::TaskError;

/// A task's input: any serde type that is `Send + Sync + 'static`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a task input",
    label = "task inputs must implement `serde::Serialize`, `serde::Deserialize` and be `Send + Sync + 'static`",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}`"
)]
pub trait TaskInput: Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> TaskInput for T {}

/// A task's output: any serde type that is `Send + 'static`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a task output",
    label = "task outputs must implement `serde::Serialize`, `serde::Deserialize` and be `Send + 'static`",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}`"
)]
pub trait TaskOutput: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> TaskOutput for T {}

/// A typed set of progress events (the enum under `#[events]`).
pub trait Events: Send + Sync + Sized + 'static {
    /// Every wire name, in declaration order.
    const NAMES: &'static [&'static str];

    /// This event's wire name (one of [`Self::NAMES`]).
    fn name(&self) -> &'static str;

    /// This event's JSON payload.
    ///
    /// # Errors
    /// When a payload type's `Serialize` fails.
    fn to_payload(&self) -> Result<serde_json::Value, serde_json::Error>;

    /// Rebuilds an event from its wire name and payload.
    ///
    /// # Errors
    /// When the name is unknown or the payload does not decode.
    fn decode(name: &str, payload: serde_json::Value) -> Result<Self, EventDecodeError>;
}

/// An event name or payload that does not decode into the events type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventDecodeError {
    /// No variant has this wire name.
    #[error("unknown event name `{0}`")]
    UnknownName(String),
    /// The payload does not match the variant.
    #[error("payload of event `{name}` does not decode: {source}")]
    Payload {
        /// The event's wire name.
        name: String,
        /// The serde error.
        source: serde_json::Error,
    },
}

/// The events type of a task that emits none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoEvents {}

impl Events for NoEvents {
    const NAMES: &'static [&'static str] = &[];

    fn name(&self) -> &'static str {
        match *self {}
    }

    fn to_payload(&self) -> Result<serde_json::Value, serde_json::Error> {
        match *self {}
    }

    fn decode(name: &str, _payload: serde_json::Value) -> Result<Self, EventDecodeError> {
        Err(EventDecodeError::UnknownName(name.to_owned()))
    }
}

/// How a failed or cancelled run under the same key is treated on a new submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecuteMode {
    /// A new submission after `failed`/`cancelled` starts a new run (the default).
    #[default]
    AtLeastOnce,
    /// A new submission after `failed`/`cancelled` attaches to the finished run.
    AtMostOnce,
}

/// What happens to a run the HTTP bridge started when its last SSE client leaves (the
/// `on_disconnect` key of `#[task]`; a call can override it with
/// `ExecuteTaskSettings::cancel_on_disconnect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDisconnect {
    /// Suspend it (reason `client_disconnected`) once no client has re-attached for the
    /// disconnect grace; it resumes on a re-POST or `resume`. The default. It is never
    /// cancelled.
    #[default]
    Suspend,
    /// Let it run to the end with nobody watching.
    Continue,
}

/// A task's settings (the keys of `#[task(...)]`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskOptions {
    /// Attempts that may end in `Err` or a panic before the run fails (default 3).
    pub max_attempts: NonZeroU32,
    /// Recover interrupted runs at start-up (default `true`); otherwise suspend them.
    pub auto_recover: bool,
    /// Runs interrupted longer ago than this fail with `recovery_max_age_exceeded`; zero means
    /// never recover (default 5 min).
    pub recovery_max_age: Duration,
    /// Treatment of finished runs on resubmission.
    pub execute_mode: ExecuteMode,
    /// The run needs the caller's live user context.
    pub on_behalf_of: bool,
    /// What happens to a bridge-started run when its last SSE client leaves.
    pub on_disconnect: OnDisconnect,
    /// The version of the handler's code (default 1), recorded with each run: a process
    /// resumes only runs of the versions it has (see `TaskFlowBuilder::incompatible_runs`).
    pub version: NonZeroU32,
    /// The names of every step the handler can call (`fetch` for the keys `fetch#0`,
    /// `fetch#1`, ...), when known: `#[task]` records them when it sees every step call in the
    /// body (literal names, the context never handed elsewhere). A run whose log holds a step
    /// not named here was written by other code and is set aside at recovery rather than
    /// replayed into this one. `None` (the default) means unknown: no such check.
    pub known_steps: Option<&'static [&'static str]>,
    /// The `#[signals]` enum the task accepts (`#[task(signals = S)]`): signals sent to its
    /// runs are checked against it and reach the handler through
    /// [`TaskContext::next_signal`](crate::TaskContext::next_signal). `None` (the default):
    /// untyped signals of any name, received with
    /// [`TaskContext::wait_signal`](crate::TaskContext::wait_signal).
    pub signals: Option<crate::signals::SignalSchema>,
}

impl Default for TaskOptions {
    fn default() -> Self {
        Self {
            max_attempts: NonZeroU32::new(defaults::MAX_ATTEMPTS)
                .expect("the default max_attempts is not zero"),
            auto_recover: defaults::AUTO_RECOVER,
            recovery_max_age: Duration::from_millis(defaults::RECOVERY_MAX_AGE_MS),
            execute_mode: ExecuteMode::AtLeastOnce,
            on_behalf_of: false,
            on_disconnect: OnDisconnect::Suspend,
            version: NonZeroU32::MIN,
            known_steps: None,
            signals: None,
        }
    }
}

impl TaskOptions {
    /// Sets `max_attempts`.
    #[must_use]
    pub fn max_attempts(mut self, n: NonZeroU32) -> Self {
        self.max_attempts = n;
        self
    }

    /// Sets `auto_recover`.
    #[must_use]
    pub fn auto_recover(mut self, on: bool) -> Self {
        self.auto_recover = on;
        self
    }

    /// Sets `recovery_max_age`.
    #[must_use]
    pub fn recovery_max_age(mut self, age: Duration) -> Self {
        self.recovery_max_age = age;
        self
    }

    /// Sets `execute_mode`.
    #[must_use]
    pub fn execute_mode(mut self, mode: ExecuteMode) -> Self {
        self.execute_mode = mode;
        self
    }

    /// Sets `on_behalf_of`.
    #[must_use]
    pub fn on_behalf_of(mut self, on: bool) -> Self {
        self.on_behalf_of = on;
        self
    }

    /// Sets `on_disconnect`.
    #[must_use]
    pub fn on_disconnect(mut self, rule: OnDisconnect) -> Self {
        self.on_disconnect = rule;
        self
    }

    /// Sets `version`.
    #[must_use]
    pub fn version(mut self, version: NonZeroU32) -> Self {
        self.version = version;
        self
    }

    /// Sets `known_steps`: every step name the handler can call.
    #[must_use]
    pub fn known_steps(mut self, names: &'static [&'static str]) -> Self {
        self.known_steps = Some(names);
        self
    }

    /// Sets `signals`: the task accepts the signals of `S`.
    #[must_use]
    pub fn signals<S: crate::signals::Signals>(mut self) -> Self {
        self.signals = Some(crate::signals::SignalSchema::of::<S>());
        self
    }
}

/// A durable task: a zero-sized handle (what `#[task]` turns the fn into) that names the
/// handler and carries its types, so `start`, `wait` and `subscribe` need no turbofish.
///
/// ```
/// use taskflow::{NoEvents, Task, TaskContext, TaskError};
///
/// #[derive(Clone, Copy)]
/// struct Double;
///
/// impl Task for Double {
///     const NAME: &'static str = "double";
///     type Input = u64;
///     type Output = u64;
///     type Events = NoEvents;
///
///     async fn run(self, ctx: TaskContext<NoEvents>, n: u64) -> Result<u64, TaskError> {
///         ctx.step("double", || async move { Ok::<_, TaskError>(n * 2) }).await
///     }
/// }
/// ```
pub trait Task: Copy + Send + Sync + 'static {
    /// The registered name (task-name grammar).
    const NAME: &'static str;
    /// The input type.
    type Input: TaskInput;
    /// The output type.
    type Output: TaskOutput;
    /// The progress events.
    type Events: Events;

    /// The task's settings.
    fn options(&self) -> TaskOptions {
        TaskOptions::default()
    }

    /// The handler.
    fn run(
        self,
        ctx: TaskContext<Self::Events>,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, TaskError>> + Send;
}
