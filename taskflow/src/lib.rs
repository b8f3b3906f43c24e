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
//! use taskflow::{NoEvents, Task, TaskContext, TaskError, TaskFlow};
//!
//! #[derive(Clone, Copy)]
//! struct Sum;
//!
//! impl Task for Sum {
//!     const NAME: &'static str = "sum";
//!     type Input = Vec<u64>;
//!     type Output = u64;
//!     type Events = NoEvents;
//!
//!     async fn run(self, ctx: TaskContext<NoEvents>, xs: Vec<u64>) -> Result<u64, TaskError> {
//!         let mut total = 0;
//!         for x in xs {
//!             // Each step's result is durable once `step` returns.
//!             total = ctx.step("add", || async move { Ok::<_, TaskError>(total + x) }).await?;
//!         }
//!         Ok(total)
//!     }
//! }
//!
//! # async fn demo() -> Result<(), taskflow::Error> {
//! let flow = TaskFlow::builder().data_dir(".taskflow").register(Sum).build().await?;
//! let run = flow.start(Sum, vec![1, 2, 3]).await?;
//! assert_eq!(flow.wait(&run).await?, 6);
//! flow.shutdown().await?;
//! # Ok(()) }
//! ```
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
mod lifecycle;
mod metrics;
mod names;
mod schema;
mod settings;
pub mod sse;
mod status;
pub mod store;
mod task;
#[cfg(feature = "test-util")]
pub mod testing;

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "client")]
pub mod client;

#[doc(hidden)]
#[path = "macro_support.rs"]
pub mod __private;

pub use schemars;
pub use taskflow_macros::{events, task};

pub use crate::schema::EventPayload;
pub use crate::settings::{ExecuteTaskSettings, not_a_setting};

pub use crate::clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use crate::context::{StepOrigin, TaskContext};
pub use crate::engine::{
    AnyTask, Environment, EventSubscription, MAX_REASON_CHARS, StartOptions, TaskEvent, TaskFlow,
    TaskFlowBuilder, TaskHandle, TypedEventError, TypedSubscription, UserScope,
};
pub use crate::error::{
    BuildError, ControlError, Error, ErrorRecord, IntoTaskError, PayloadKind, PayloadTooLarge,
    STOPPED_CODE, StartError, StoreError, TaskError, WaitError,
};
pub use crate::identity::{AccessToken, InvalidUserId, UserContext, UserId};
pub use crate::ids::{Epoch, IdempotencyKey, Seq, StepKey, TaskId};
pub use crate::lifecycle::Lifecycle;
pub use crate::metrics::MetricsSnapshot;
pub use crate::names::{NameError, RESERVED_EVENT_NAMES, validate_event_name, validate_name};
pub use crate::status::{ListFilter, StoredEvent, SubscribeFrom, TaskState, TaskStatus};
pub use crate::task::{
    EventDecodeError, Events, ExecuteMode, NoEvents, OnDisconnect, Task, TaskInput, TaskOptions,
    TaskOutput,
};

/// The names most task code needs: `use taskflow::prelude::*;`.
pub mod prelude {
    pub use crate::{
        ExecuteMode, NoEvents, StepOrigin, SubscribeFrom, TaskContext, TaskError, TaskFlow,
        TaskHandle, events, schemars::JsonSchema, task,
    };
}
