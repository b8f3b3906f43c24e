//! # taskflow
//!
//! Durable tasks that stream typed progress to web clients.
//!
//! A task is an `async fn` whose [`TaskContext::step`] results are checkpointed in a
//! write-ahead log on [redb](https://docs.rs/redb) before they are acknowledged. After a crash
//! the handler re-runs from the top: finished steps return their recorded result without
//! running again, and events already emitted are not emitted twice. Identical submissions share
//! a content-addressed [`IdempotencyKey`], so a double click or a reconnect attaches to the
//! running task instead of starting another.
//!
//! ```no_run
//! use taskflow::prelude::*;
//!
//! #[events]
//! pub enum Progress {
//!     Added { total: u64 },
//! }
//!
//! #[task(name = "sum", events = Progress)]
//! async fn sum(ctx: TaskContext<Progress>, xs: Vec<u64>) -> Result<u64, TaskError> {
//!     let mut total = 0;
//!     for x in xs {
//!         // Each step's result is durable once `step` returns; after a crash it is replayed.
//!         total = ctx.step("add", || async move { Ok::<_, TaskError>(total + x) }).await?;
//!         ctx.emit(Progress::Added { total }).await?;
//!     }
//!     Ok(total)
//! }
//!
//! # async fn demo() -> Result<(), taskflow::Error> {
//! let flow = TaskFlow::builder().data_dir(".taskflow").register(sum).build().await?;
//! let run = flow.start(sum, vec![1, 2, 3]).await?; // the same input again attaches
//! assert_eq!(flow.wait(&run).await?, 6);
//! flow.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! [`#[task]`](macro@task) and [`#[events]`](macro@events) list their keys; [`Task`] and
//! [`Events`] can also be implemented by hand.
//!
//! ## Resubmitting an idempotency key
//!
//! | state of the key's run | `start` | `subscribe` |
//! |---|---|---|
//! | created, running | attach | live |
//! | suspended | attach and resume | replay, stays suspended |
//! | completed | attach | replay |
//! | failed, cancelled | `AtLeastOnce`: new run; `AtMostOnce`: attach | replay |
//!
//! Sequence numbers are per key and never reused: a new run continues after the old one's
//! last event.

mod clock;
mod context;
mod engine;
mod error;
mod identity;
mod ids;
mod input_error;
mod lifecycle;
mod metrics;
mod names;
mod schema;
mod settings;
mod signals;
pub mod sse;
mod status;
pub mod store;
mod sync;
mod task;
mod task_error;
#[cfg(feature = "test-util")]
pub mod testing;
mod wait;

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "client")]
pub mod client;

#[doc(hidden)]
#[path = "macro_support.rs"]
pub mod __private;

pub use schemars;
/// Turns an enum into a typed set of progress events: implements [`Events`] (each variant's
/// wire name, its JSON payload, decoding back) and adds `json_schema()` and `typescript()`
/// for clients in other languages. It implements no serde trait on the enum; payload types
/// derive `serde` and [`schemars::JsonSchema`] themselves.
///
/// | variant | wire name | payload |
/// |---|---|---|
/// | `Tick { value: u32 }` | `tick` (snake_case of the variant) | `{"value": ..}` |
/// | `StageDone(StageInfo)` | `stage_done` | `StageInfo`'s JSON |
/// | `Started` | `started` | `{}` |
///
/// | attribute | does |
/// |---|---|
/// | `#[event(name = "stage-done")]` on a variant | sets its wire name |
/// | `#[events(crate = "path")]` | names a renamed `taskflow` dependency |
/// | `#[serde(...)]` on a field | applies to that field's payload encoding |
///
/// Compile errors, each with the fix: a reserved name (`ready`, `error`, `heartbeat`,
/// `completed`, `failed`, `cancelled`, `suspended`, any case) or prefix (`step:`,
/// `taskflow.`), a name outside the grammar (1–64 of `[A-Za-z0-9_.-]`, first `[a-z0-9]`), two
/// variants with one wire name, a tuple variant with more than one field, a generic enum, an
/// unknown key.
///
/// ```
/// use taskflow::prelude::*;
/// use taskflow::Events as _;
///
/// #[derive(serde::Serialize, serde::Deserialize, JsonSchema)]
/// pub struct StageInfo {
///     pub stage: String,
/// }
///
/// #[events]
/// pub enum Progress {
///     Tick { value: u32 },
///     #[event(name = "stage-done")]
///     StageDone(StageInfo),
///     Started,
/// }
///
/// assert_eq!(Progress::NAMES, ["tick", "stage-done", "started"]);
/// let tick = Progress::Tick { value: 3 };
/// assert_eq!(tick.name(), "tick");
/// assert_eq!(tick.to_payload().unwrap(), serde_json::json!({"value": 3}));
/// assert!(Progress::typescript().contains("stage-done"));
/// ```
pub use taskflow_macros::events;
/// Turns an enum into the typed set of signals a task accepts: implements [`Signals`] (each
/// variant's signal name, its JSON payload, decoding back) and adds `json_schema()` and
/// `typescript()` (`{Name}Signals`: name → request body). Variants map to names and payloads
/// as with [`#[events]`](macro@events); `#[signal(name = "...")]` sets a name.
///
/// Declare it on the task with `#[task(signals = Approval)]`: every signal sent to a run of
/// that task is checked against the enum when it is sent ([`TaskFlow::signal`] and
/// `POST /tasks/{ik}/signals/{name}` refuse an unknown name or a payload that does not decode,
/// storing nothing), and the handler receives them in arrival order with
/// [`TaskContext::next_signal`].
///
/// Compile errors, each with the fix: a name of a control action (`stop`, `resume`,
/// `cancel`, any case), a name outside the grammar (1–64 of `[A-Za-z0-9_.-]`, first
/// `[a-z0-9]`), two variants with one name, a tuple variant with more than one field, a
/// generic enum, an unknown key.
///
/// ```
/// use taskflow::prelude::*;
/// use taskflow::Signals as _;
///
/// #[signals]
/// pub enum Approval {
///     Approve { by: String },
///     Reject,
/// }
///
/// #[task(signals = Approval)]
/// async fn review(ctx: TaskContext<NoEvents>, doc: String) -> Result<String, TaskError> {
///     match ctx.next_signal::<Approval>().await? {
///         Approval::Approve { by } => Ok(format!("{doc} approved by {by}")),
///         Approval::Reject => Ok(format!("{doc} rejected")),
///     }
/// }
///
/// assert_eq!(Approval::NAMES, ["approve", "reject"]);
/// assert!(Approval::typescript().contains("export type ApprovalSignals"));
/// ```
pub use taskflow_macros::signals;
/// Turns an `async fn` into a durable task: the fn is replaced by a zero-sized `Copy` handle
/// of the same name and visibility that implements [`Task`], so `register`, `start`,
/// `execute_task` and `wait` take it and its input, output and events types flow with it.
///
/// The fn is `async fn NAME(ctx: TaskContext<E>, input: I) -> Result<O, Err>` with `I` and
/// `O` serde types, `E` an [`#[events]`](macro@events) enum (or [`NoEvents`]) and
/// `Err: Into<TaskError>`; its future must be `Send`. Mistakes are compile errors at your
/// tokens, each saying what to write instead.
///
/// | key | value | default |
/// |---|---|---|
/// | `name` | the registered name, `"count-to-n"` (1–64 of `[A-Za-z0-9_.-]`, first `[a-z0-9]`) | the fn name with `_` → `-` (checked too) |
/// | `events` | the `#[events]` enum; must equal the context's type | `NoEvents` |
/// | `signals` | the [`#[signals]`](macro@signals) enum the task accepts (received with `ctx.next_signal`) | untyped signals |
/// | `max_attempts` | attempts that may end in `Err` or a panic, ≥ 1 | `3` |
/// | `auto_recover` | `true` / `false` (a bare `auto_recover` is `true`): recover interrupted runs at start-up, else suspend them | `true` |
/// | `recovery_max_age` | `"500ms"`, `"30s"`, `"5m"`, `"2h"`; older interrupted runs fail; `"0s"` = never recover | `"5m"` |
/// | `execute_mode` | `at_least_once` or `at_most_once` (also as strings): whether a resubmission after `failed`/`cancelled` starts a new run or attaches | `at_least_once` |
/// | `on_behalf_of` | `true` / `false`: the run needs the caller's live user context | `false` |
/// | `on_disconnect` | `"suspend"` or `"continue"`: what a bridge-started run does when its last SSE client has been gone for the grace | `"suspend"` |
/// | `crate` | `"path"` of a renamed `taskflow` dependency | `"::taskflow"` |
///
/// Refused with the replacement in the message: `retry`/`retries` (use `max_attempts`),
/// `cache` (the idempotency key already deduplicates), `timeout` (use `stop` and stale-run
/// recovery), `stream` (the events enum is the wire shape), `user_id`/`user` (identity comes
/// from the request). A repeated key is an error at its second occurrence, and one literal
/// step name at two `ctx.step` call sites of the body is an error too.
///
/// ```
/// use taskflow::prelude::*;
///
/// #[events]
/// pub enum Progress {
///     Tick { value: u32, total: u32 },
/// }
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// pub struct Input {
///     pub n: u32,
/// }
///
/// #[task(name = "count-to-n", events = Progress, max_attempts = 5, recovery_max_age = "10m")]
/// pub async fn count_to_n(ctx: TaskContext<Progress>, input: Input) -> Result<u32, TaskError> {
///     for i in 0..input.n {
///         // Keys tick#0, tick#1, ...: each result is durable once `step` returns.
///         ctx.step("tick", || async move { Ok::<_, TaskError>(i) }).await?;
///         ctx.emit(Progress::Tick { value: i + 1, total: input.n }).await?;
///     }
///     Ok(input.n)
/// }
///
/// use taskflow::Task as _;
/// assert_eq!(count_to_n::NAME, "count-to-n");
/// assert_eq!(count_to_n.options().max_attempts.get(), 5);
/// ```
pub use taskflow_macros::task;

pub use crate::schema::EventPayload;
pub use crate::settings::{ExecuteTaskSettings, not_a_setting};

pub use crate::clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use crate::context::{ChildRun, StepOrigin, TaskContext};
pub use crate::engine::{
    AnyTask, Environment, EventSubscription, INCOMPATIBLE_VERSION, InFlightProblem,
    IncompatibleRuns, MAX_REASON_CHARS, StartOptions, TaskEvent, TaskFlow, TaskFlowBuilder,
    TaskHandle, TypedEventError, TypedSubscription, UserScope,
};
pub use crate::error::{
    BuildError, ControlError, Error, ErrorRecord, IntoTaskError, PayloadKind, PayloadTooLarge,
    STOPPED_CODE, StartError, StoreError, TaskError, WaitError,
};
pub use crate::identity::{AccessToken, InvalidUserId, UserContext, UserId};
pub use crate::ids::{Epoch, IdempotencyKey, Seq, StepKey, TaskId};
pub use crate::lifecycle::Lifecycle;
pub use crate::metrics::{
    COMMIT_MICROS_BOUNDS, GROUP_SIZE_BOUNDS, HistogramSnapshot, Histograms, MetricsSnapshot,
};
pub use crate::names::{
    NameError, RESERVED_EVENT_NAMES, RESERVED_SIGNAL_NAMES, validate_event_name, validate_name,
    validate_signal_name,
};
pub use crate::signals::{SignalSchema, Signals};
pub use crate::status::{
    ChildStatus, ListFilter, StoredEvent, SubscribeFrom, TaskState, TaskStatus,
};
pub use crate::task::{
    EventDecodeError, Events, ExecuteMode, NoEvents, OnDisconnect, Task, TaskInput, TaskOptions,
    TaskOutput,
};
pub use crate::wait::{WaitKind, Waiting};

/// Operator access to every owner's runs ([`TaskFlow::operator`]): what a console or an admin
/// tool lists, inspects and steers.
pub mod operator {
    pub use crate::engine::{
        AttemptView, MAX_PAGE, Operator, RunDetail, RunFilter, RunPage, StepView,
    };
}

/// The names most task code needs: `use taskflow::prelude::*;`.
pub mod prelude {
    pub use crate::{
        ExecuteMode, NoEvents, StepOrigin, SubscribeFrom, TaskContext, TaskError, TaskFlow,
        TaskHandle, events, schemars::JsonSchema, signals, task,
    };
}
