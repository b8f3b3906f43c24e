//! The engine: [`TaskFlow`], its user scopes, and the machinery behind them.
//!
//! One concern per file. [`Inner`] is the engine's state; its fields are private to this
//! module tree, so everything outside `engine/` goes through methods: the handler's context
//! through [`attempt::AttemptState`], the HTTP bridge through [`port::Port`].

mod admission;
mod app_state;
pub(crate) mod attempt;
mod builder;
pub(crate) mod children;
mod control;
mod driver;
#[cfg(feature = "axum")]
mod extensions;
mod handle;
mod hub;
mod ik;
mod key_lock;
mod limits;
mod open;
mod operator;
#[cfg(feature = "axum")]
pub(crate) mod port;
mod query;
mod recovery;
mod registry;
mod retention;
mod runs;
mod scope;
mod shutdown;
mod signal;
mod submit;
mod subscription;
mod timers;
mod transition;
mod typed_subscription;
mod versions;

use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::task::AbortHandle;

use self::admission::Admission;
use self::app_state::AppState;
use self::builder::Config;
#[cfg(feature = "axum")]
use self::extensions::Extensions;
use self::hub::Hub;
use self::key_lock::KeyLocks;
use self::registry::Registry;
use self::runs::Runs;
use crate::clock::{MonotonicClock, Timestamp};
use crate::error::StoreError;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::store::DynStore;

pub use self::builder::{Environment, TaskFlowBuilder};
pub(crate) use self::control::Action;
pub use self::handle::{AnyTask, TaskHandle};
pub use self::limits::MAX_REASON_CHARS;
pub use self::operator::{
    AttemptView, MAX_PAGE, Operator, RunDetail, RunFilter, RunPage, StepView,
};
pub(crate) use self::scope::Scope;
pub use self::scope::{StartOptions, UserScope};
pub use self::subscription::EventSubscription;
#[cfg(feature = "client")]
pub(crate) use self::typed_subscription::decode as decode_event;
pub use self::typed_subscription::{TaskEvent, TypedEventError, TypedSubscription};
pub use self::versions::{INCOMPATIBLE_VERSION, InFlightProblem, IncompatibleRuns};

/// The durable task engine. Cheap to clone (all clones share one engine).
///
/// Calls on `TaskFlow` run as the **service identity**; [`TaskFlow::as_user`] returns a scope
/// with the same methods that runs as one user. Neither sees the other's runs: a key that
/// belongs to another owner behaves exactly like an unknown key.
#[derive(Clone)]
pub struct TaskFlow {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TaskFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskFlow")
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}

/// The engine's state, shared by the flow, its drivers and its attempts.
struct Inner {
    store: DynStore,
    hub: Arc<Hub>,
    registry: Registry,
    /// The app's values for its tasks (`ctx.state::<T>()`).
    state: AppState,
    config: Config,
    metrics: Arc<Metrics>,
    clock: MonotonicClock,
    /// Runs with a driver in this process, and their live user contexts.
    runs: Runs,
    /// Parked runs of this process waiting for their time.
    timers: timers::Timers,
    key_locks: KeyLocks,
    admission: Mutex<Admission>,
    shutdown: watch::Sender<bool>,
    background: Mutex<Vec<AbortHandle>>,
    /// Per-flow state of layers above the engine (the bridge's open streams).
    #[cfg(feature = "axum")]
    extensions: Extensions,
    /// Recovered runs the bridge had watched with the disconnect rule, until it takes them.
    #[cfg(feature = "axum")]
    recovered_watched: Mutex<Vec<port::WatchedRun>>,
}

use crate::sync::lock;

impl TaskFlow {
    /// Starts configuring a flow.
    pub fn builder() -> TaskFlowBuilder {
        TaskFlowBuilder::default()
    }

    /// Returns a scope whose calls run as `user` and own what they create.
    #[must_use]
    pub fn as_user(&self, user: &crate::identity::UserContext) -> UserScope {
        UserScope::new(self.clone(), Scope::user(user))
    }

    /// A copy of the counters.
    #[must_use]
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }

    /// The store's commit latency and group size histograms (also on `/metrics` as
    /// `taskflow_wal_commit_seconds_bucket` and `taskflow_wal_group_size_bucket`).
    #[must_use]
    pub fn histograms(&self) -> crate::metrics::Histograms {
        self.inner.metrics.histograms()
    }

    /// The environment the flow was built for (it decides masking at the HTTP edge).
    #[must_use]
    pub fn environment(&self) -> Environment {
        self.inner.config.environment
    }

    /// Whether the store is fail-stopped after a failed commit (the engine admits no work
    /// until the process restarts).
    #[must_use]
    pub fn is_storage_failed(&self) -> bool {
        self.inner.store.is_failed()
    }

    /// Runs retention now: removes finished runs older than the terminal retention and
    /// suspended runs older than the suspended retention, compacting the file after a large
    /// removal. Returns how many runs were removed. (It also runs in the background.)
    ///
    /// # Errors
    /// When storage fails.
    pub async fn collect_garbage(&self) -> Result<usize, StoreError> {
        retention::collect(&self.inner).await
    }

    /// Stops admitting work, signals every running handler, waits up to the stop grace for
    /// them, leaves unfinished runs recoverable, and closes the store. Idempotent.
    ///
    /// # Errors
    /// When closing the store fails.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        self.inner.shutdown().await
    }

    /// The service identity's view: what the generated call surface runs as.
    fn scoped(&self) -> (&Arc<Inner>, Scope) {
        (&self.inner, Scope::service())
    }
}

scope::scoped_api!(TaskFlow);

impl Inner {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

// Compile-time check: handles are shared across tasks and threads.
const _: fn() = || {
    fn is<T: Send + Sync>() {}
    is::<TaskFlow>();
    is::<crate::status::StoredEvent>();
};
