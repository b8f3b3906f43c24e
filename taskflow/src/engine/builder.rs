//! [`TaskFlowBuilder`]: data dir, registrations, limits, clock, environment.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::TaskFlow;
use super::admission::Limits;
use super::app_state::AppState;
use super::registry::{Registered, Registry};
use crate::clock::{Clock, SystemClock};
use crate::error::BuildError;
use crate::names::validate_name;
use crate::task::Task;

/// Development warns where production refuses, and production masks error messages at the
/// HTTP edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Environment {
    /// Lenient (the default).
    #[default]
    Development,
    /// Strict.
    Production,
}

impl Environment {
    /// Reads `TASKFLOW_ENV`: `production`, `development`, or unset (development).
    ///
    /// # Errors
    /// [`BuildError::InvalidEnvironment`] for any other value.
    pub fn from_env() -> Result<Self, BuildError> {
        Self::parse(std::env::var("TASKFLOW_ENV").ok().as_deref())
    }

    /// Parses a `TASKFLOW_ENV` value; `None` (unset) means development.
    ///
    /// # Errors
    /// [`BuildError::InvalidEnvironment`] for anything but `production` or `development`.
    pub fn parse(value: Option<&str>) -> Result<Self, BuildError> {
        match value {
            None | Some("development") => Ok(Self::Development),
            Some("production") => Ok(Self::Production),
            Some(other) => Err(BuildError::InvalidEnvironment(other.to_owned())),
        }
    }
}

/// Engine settings fixed at build time.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) environment: Environment,
    pub(crate) limits: Limits,
    pub(crate) payload_limit: usize,
    pub(crate) stop_grace: Duration,
    pub(crate) retry_base: Duration,
    pub(crate) retry_cap: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) retain_terminal: Duration,
    pub(crate) retain_suspended: Duration,
    pub(crate) gc_interval: Duration,
    pub(crate) compact_after: usize,
    /// SSE streams the bridge keeps open at once, in all and per user.
    pub(crate) max_streams: usize,
    pub(crate) max_streams_per_user: usize,
    /// An SSE client that reads nothing for this long loses its stream.
    pub(crate) stalled_stream_after: Duration,
    /// A connection whose request head has not arrived within this is closed (`serve`).
    pub(crate) header_read_timeout: Duration,
    /// What happens to an in-flight run of another version of its task.
    pub(crate) incompatible_runs: super::IncompatibleRuns,
    /// Whether the data dir's store puts the event journal in front of its redb file.
    pub(crate) event_journal: bool,
    /// Every step's origin, for tests.
    #[cfg(feature = "test-util")]
    pub(crate) step_log: Option<crate::testing::StepLog>,
    /// A crash armed at an exact commit of a redb store (the crash matrix).
    #[cfg(feature = "test-util")]
    pub(crate) crash_at: Option<Arc<crate::testing::CrashAtCommit>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            environment: Environment::Development,
            limits: Limits::default(),
            payload_limit: 1024 * 1024,
            stop_grace: Duration::from_secs(2),
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(5),
            retain_terminal: Duration::from_secs(24 * 3600),
            retain_suspended: Duration::from_secs(7 * 24 * 3600),
            gc_interval: Duration::from_secs(600),
            compact_after: 1000,
            max_streams: 10_000,
            max_streams_per_user: 100,
            stalled_stream_after: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            incompatible_runs: super::IncompatibleRuns::Suspend,
            #[cfg(feature = "test-util")]
            step_log: None,
            #[cfg(feature = "test-util")]
            crash_at: None,
            event_journal: false,
        }
    }
}

/// Where the write-ahead log lives.
pub(crate) enum StoreChoice {
    /// A redb file in this directory, opened at build.
    DataDir(PathBuf),
    /// A PostgreSQL store, connected at build.
    #[cfg(feature = "postgres")]
    Postgres(crate::store::PgConfig),
    /// A store the caller opened.
    Custom(crate::store::DynStore),
    /// A redb file through an instrumented backend (tests).
    #[cfg(feature = "test-util")]
    /// With the event journal's file through another one.
    Backend(
        PathBuf,
        crate::testing::BoxedBackend,
        Option<crate::testing::BoxedBackend>,
    ),
}

/// Configures and opens a [`TaskFlow`].
///
/// ```no_run
/// # async fn demo() -> Result<(), taskflow::Error> {
/// let flow = taskflow::TaskFlow::builder().data_dir(".taskflow").build().await?;
/// # flow.shutdown().await?; Ok(()) }
/// ```
#[must_use]
pub struct TaskFlowBuilder {
    store: StoreChoice,
    tasks: Vec<Registered>,
    state: AppState,
    environment: Option<Environment>,
    clock: Arc<dyn Clock>,
    config: Config,
}

impl std::fmt::Debug for TaskFlowBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskFlowBuilder")
            .field(
                "tasks",
                &self.tasks.iter().map(|t| t.name).collect::<Vec<_>>(),
            )
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Default for TaskFlowBuilder {
    fn default() -> Self {
        Self {
            store: StoreChoice::DataDir(PathBuf::from(".taskflow")),
            tasks: Vec::new(),
            state: AppState::default(),
            environment: None,
            clock: Arc::new(SystemClock),
            config: Config::default(),
        }
    }
}

impl TaskFlowBuilder {
    /// The directory of the redb file `taskflow.redb` (default `.taskflow`; created if missing).
    pub fn data_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.store = StoreChoice::DataDir(dir.as_ref().to_owned());
        self
    }

    /// Puts the event journal in front of the [`data_dir`](Self::data_dir)'s redb file:
    /// queued emits, steps and heartbeats are acknowledged after one append and one fdatasync
    /// of `taskflow.journal` instead of a database commit, which cuts an emit's latency when
    /// many runs emit at once (BENCHMARKS.md: 500 streams' p99 2.4-4.6x lower). Guarantees
    /// are unchanged (an event reaches subscribers only once it is durable; seqs stay gapless;
    /// a crash or a power cut loses nothing acknowledged), and a data dir opened without it
    /// afterwards applies the journal's records and removes the file. Off by default (the
    /// default is one redb file, every acknowledged write a durable commit); no effect on the
    /// other stores. See [`RedbStore::open_with_event_journal`](crate::store::RedbStore::open_with_event_journal).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), taskflow::Error> {
    /// let flow = taskflow::TaskFlow::builder()
    ///     .data_dir(".taskflow")
    ///     .event_journal(true)
    ///     .build()
    ///     .await?;
    /// # flow.shutdown().await?; Ok(()) }
    /// ```
    pub fn event_journal(mut self, on: bool) -> Self {
        self.config.event_journal = on;
        self
    }

    /// Uses `store` for the write-ahead log instead of a redb file in [`data_dir`](Self::data_dir)
    /// (the last of the two calls wins).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), taskflow::Error> {
    /// use taskflow::store::RedbStore;
    ///
    /// let store = tokio::task::spawn_blocking(|| RedbStore::open(".taskflow"))
    ///     .await
    ///     .expect("the open did not panic")?;
    /// let flow = taskflow::TaskFlow::builder().store(store).build().await?;
    /// # flow.shutdown().await?; Ok(()) }
    /// ```
    pub fn store(mut self, store: impl crate::store::Store) -> Self {
        self.store = StoreChoice::Custom(std::sync::Arc::new(store));
        self
    }

    /// Uses the PostgreSQL store (feature `postgres`): taskflow's tables in one schema of the
    /// database `config` names (a libpq-style URL, or a [`PgConfig`](crate::store::PgConfig)
    /// with a schema and a stale threshold), so several processes can share one queue. The
    /// last of [`data_dir`](Self::data_dir), [`store`](Self::store) and this wins.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), taskflow::Error> {
    /// let flow = taskflow::TaskFlow::builder()
    ///     .postgres("postgres://app@127.0.0.1:5432/app")
    ///     .build()
    ///     .await?;
    /// # flow.shutdown().await?; Ok(()) }
    /// ```
    #[cfg(feature = "postgres")]
    pub fn postgres(mut self, config: impl Into<crate::store::PgConfig>) -> Self {
        self.store = StoreChoice::Postgres(config.into());
        self
    }

    /// Test hook (feature `test-util`): open the redb file through a test backend (an
    /// [`InstrumentedBackend`](crate::testing::InstrumentedBackend) on `dir`'s file, or a
    /// [`PowerCutBackend`](crate::testing::PowerCutBackend) in memory); `dir` names the store
    /// in messages.
    #[cfg(feature = "test-util")]
    pub fn storage_backend(
        mut self,
        dir: impl AsRef<Path>,
        backend: impl crate::testing::TestBackend,
    ) -> Self {
        self.store = StoreChoice::Backend(
            dir.as_ref().to_owned(),
            crate::testing::BoxedBackend::new(backend),
            None,
        );
        self
    }

    /// Test hook (feature `test-util`): as [`storage_backend`](Self::storage_backend), with
    /// the [`event_journal`](Self::event_journal) in front of the database and its file
    /// through `journal` (a [`PowerCutBackend`](crate::testing::PowerCutBackend) on the
    /// database's disk: the power-cut matrix of the two files), its halves
    /// [`TEST_JOURNAL_HALF`](crate::testing::TEST_JOURNAL_HALF) each.
    #[cfg(feature = "test-util")]
    pub fn storage_backend_with_journal(
        mut self,
        dir: impl AsRef<Path>,
        backend: impl crate::testing::TestBackend,
        journal: impl crate::testing::TestBackend,
    ) -> Self {
        self.store = StoreChoice::Backend(
            dir.as_ref().to_owned(),
            crate::testing::BoxedBackend::new(backend),
            Some(crate::testing::BoxedBackend::new(journal)),
        );
        self
    }

    /// What happens to a run in flight that another version of its task created
    /// (`#[task(version = N)]`): [`IncompatibleRuns::Suspend`](crate::IncompatibleRuns::Suspend)
    /// (the default: deploy that version and resume it there) or `Fail` (code
    /// `incompatible_version`). Either way it is never replayed into this code.
    pub fn incompatible_runs(mut self, policy: crate::IncompatibleRuns) -> Self {
        self.config.incompatible_runs = policy;
        self
    }

    /// Test hook (feature `test-util`): records every step's origin (executed or replayed)
    /// in `log`.
    #[cfg(feature = "test-util")]
    pub fn step_log(mut self, log: crate::testing::StepLog) -> Self {
        self.config.step_log = Some(log);
        self
    }

    /// Crashes a redb store at an exact commit (the crash matrix).
    #[cfg(feature = "test-util")]
    pub(crate) fn crash_at_commit(mut self, trigger: Arc<crate::testing::CrashAtCommit>) -> Self {
        self.config.crash_at = Some(trigger);
        self
    }

    /// Registers a task. Registering one name twice is an error in production and replaces
    /// the earlier registration (with a warning) in development.
    pub fn register<T: Task>(mut self, task: T) -> Self {
        self.tasks.push(Registered::of(task));
        self
    }

    /// Gives the flow's tasks a value of the app's (a database pool, an HTTP client, a
    /// configuration), read in a handler with [`TaskContext::state`](crate::TaskContext::state).
    /// One value per type, per flow: two flows in one process never share it. Giving a type
    /// twice keeps the last value.
    ///
    /// ```
    /// # async fn demo() -> Result<(), taskflow::Error> {
    /// #[derive(Clone)]
    /// struct Greeting(&'static str);
    ///
    /// let flow = taskflow::TaskFlow::builder()
    ///     .data_dir(".taskflow")
    ///     .state(Greeting("hello"))
    ///     .build()
    ///     .await?;
    /// # flow.shutdown().await?; Ok(()) }
    /// ```
    pub fn state<T: std::any::Any + Send + Sync>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// Sets the environment (default: from `TASKFLOW_ENV`).
    pub fn environment(mut self, env: Environment) -> Self {
        self.environment = Some(env);
        self
    }

    /// Injects the clock every persisted time comes from.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Runs executing at once, across all owners (default 50).
    pub fn max_concurrent(mut self, n: usize) -> Self {
        self.config.limits.global_concurrency = n;
        self
    }

    /// Runs executing at once per user (default 10; not applied to the service identity).
    pub fn max_concurrent_per_user(mut self, n: usize) -> Self {
        self.config.limits.user_concurrency = n;
        self
    }

    /// New runs per minute, across all owners (default 1000).
    pub fn start_rate_per_minute(mut self, n: usize) -> Self {
        self.config.limits.global_rate_per_minute = n;
        self
    }

    /// New runs per minute per user (default 100; not applied to the service identity).
    pub fn start_rate_per_minute_per_user(mut self, n: usize) -> Self {
        self.config.limits.user_rate_per_minute = n;
        self
    }

    /// Runs waiting in `created` for a slot (default 1000); more are refused with `queue_full`.
    pub fn queue_limit(mut self, n: usize) -> Self {
        self.config.limits.queue = n;
        self
    }

    /// Bytes of JSON allowed for an input, an output, a step result or an event (default 1 MiB).
    pub fn payload_limit(mut self, bytes: usize) -> Self {
        self.config.payload_limit = bytes;
        self
    }

    /// How long a stopped handler may run on before it is dropped (default 2 s).
    pub fn stop_grace(mut self, grace: Duration) -> Self {
        self.config.stop_grace = grace;
        self
    }

    /// Retry backoff: `base × 2ⁿ` capped at `cap` (default 1 s and 30 s).
    pub fn retry_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.config.retry_base = base;
        self.config.retry_cap = cap;
        self
    }

    /// How often a running attempt records a heartbeat (default 5 s).
    pub fn heartbeat_interval(mut self, every: Duration) -> Self {
        self.config.heartbeat_interval = every;
        self
    }

    /// How long finished runs (default 24 h) and suspended runs (default 7 days) are kept.
    pub fn retention(mut self, terminal: Duration, suspended: Duration) -> Self {
        self.config.retain_terminal = terminal;
        self.config.retain_suspended = suspended;
        self
    }

    /// Compacts the file after a retention pass removed at least `runs` runs (default 1000),
    /// giving the freed space back to the file system.
    pub fn compact_after(mut self, runs: usize) -> Self {
        self.config.compact_after = runs.max(1);
        self
    }

    /// SSE streams the HTTP bridge keeps open at once, across all clients (default 10,000);
    /// one more is refused with 429 `rate_limited` and `Retry-After`.
    pub fn max_open_streams(mut self, n: usize) -> Self {
        self.config.max_streams = n;
        self
    }

    /// SSE streams one user may keep open at once (default 100; not applied to the service
    /// identity); one more is refused with 429 `rate_limited` and `Retry-After`.
    pub fn max_open_streams_per_user(mut self, n: usize) -> Self {
        self.config.max_streams_per_user = n;
        self
    }

    /// How long an SSE client may read nothing while frames wait for it before its stream is
    /// dropped (default 30 s): a client that never reads holds no memory or stream slot for
    /// long, and the disconnect rule then applies as for any client that left. The bridge's
    /// `serve` (feature `axum`) enforces it by closing such a connection; under another server
    /// a stream that is not read stops being polled once hyper's write buffer is full, and
    /// holds its slot until that server drops the connection.
    pub fn stalled_stream_after(mut self, after: Duration) -> Self {
        self.config.stalled_stream_after = after;
        self
    }

    /// How long the HTTP bridge's `serve` (feature `axum`) waits for a request's head (default 10 s): a
    /// client that trickles its headers (slowloris) or sends none is disconnected then.
    pub fn header_read_timeout(mut self, after: Duration) -> Self {
        self.config.header_read_timeout = after;
        self
    }

    /// How often retention runs in the background (default 10 min).
    pub fn gc_interval(mut self, every: Duration) -> Self {
        self.config.gc_interval = every;
        self
    }

    /// Opens the log, checks the registrations and recovers interrupted runs before returning.
    ///
    /// # Errors
    /// [`BuildError`]: the data dir is in use or unreadable, a duplicate registration in
    /// production, an invalid name or setting, an invalid `TASKFLOW_ENV`.
    pub async fn build(self) -> Result<TaskFlow, BuildError> {
        let mut config = self.config;
        config.environment = match self.environment {
            Some(env) => env,
            None => Environment::from_env()?,
        };
        if config.limits.global_concurrency == 0 || config.payload_limit == 0 {
            return Err(BuildError::InvalidSetting(
                "max_concurrent and payload_limit must be at least 1".into(),
            ));
        }
        let mut registry = Registry::default();
        for task in self.tasks {
            validate_name(task.name)?;
            let name = task.name;
            if registry.insert(task).is_some() {
                if config.environment == Environment::Production {
                    return Err(BuildError::DuplicateTask(name.to_owned()));
                }
                tracing::warn!(
                    task = name,
                    "task registered twice; keeping the last registration (an error in production)"
                );
            }
        }
        TaskFlow::open(self.store, registry, self.state, self.clock, config).await
    }
}
