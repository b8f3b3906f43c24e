//! The engine: [`TaskFlow`], its user scopes, and the machinery behind them.

mod admission;
mod builder;
mod driver;
mod hub;
mod ik;
mod recovery;
mod registry;
mod retention;
mod scope;
pub(crate) mod streams;
mod subscription;

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedMutexGuard, watch};
use tokio::task::AbortHandle;

use self::admission::{Admission, Refusal, Ticket};
use self::builder::{Config, StoreChoice};
pub use self::builder::{Environment, TaskFlowBuilder};
use self::hub::Hub;
use self::registry::Registry;
pub use self::scope::{StartOptions, UserScope};
pub(crate) use self::subscription::decode as decode_event;
pub use self::subscription::{EventSubscription, TaskEvent, TypedEventError, TypedSubscription};
use crate::clock::{Clock, MonotonicClock, Timestamp};
use crate::error::{
    BuildError, ControlError, ErrorRecord, PayloadKind, PayloadTooLarge, StartError, StoreError,
    WaitError,
};
use crate::identity::{UserContext, UserId};
use crate::ids::{IdempotencyKey, Seq, TaskId};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::status::{ListFilter, StoredEvent, SubscribeFrom, TaskState, TaskStatus};
use crate::store::redb::RedbStore;
use crate::store::{Committed, DynStore, Fence, Scan, TaskPatch, TaskRecord, Write, WriteBatch};
use crate::task::{ExecuteMode, Task};

/// Longest accepted stop or cancel reason, in characters.
pub const MAX_REASON_CHARS: usize = 512;

/// The durable task engine. Cheap to clone (all clones share one engine).
///
/// Calls on `TaskFlow` run as the **service identity**; [`TaskFlow::as_user`] returns a scope
/// with the same methods that runs as one user. Neither sees the other's runs: a key that
/// belongs to another owner behaves exactly like an unknown key.
#[derive(Clone)]
pub struct TaskFlow {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for TaskFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskFlow")
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}

/// A started (or attached) run, typed by its task.
pub struct TaskHandle<T> {
    /// The run's id.
    pub task_id: TaskId,
    /// The submission's key.
    pub idempotency_key: IdempotencyKey,
    /// `true` when the call attached to an existing run instead of creating one.
    pub attached: bool,
    _task: PhantomData<fn() -> T>,
}

impl<T> Clone for TaskHandle<T> {
    fn clone(&self) -> Self {
        Self {
            task_id: self.task_id,
            idempotency_key: self.idempotency_key.clone(),
            attached: self.attached,
            _task: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for TaskHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle")
            .field("task_id", &self.task_id)
            .field("idempotency_key", &self.idempotency_key)
            .field("attached", &self.attached)
            .finish()
    }
}

/// Who a call runs as, and the live user context it brings.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    pub(crate) owner: Option<UserId>,
    pub(crate) user: Option<UserContext>,
}

impl Scope {
    pub(crate) fn service() -> Self {
        Self::default()
    }

    pub(crate) fn user(user: &UserContext) -> Self {
        Self {
            owner: Some(user.id().clone()),
            user: Some(user.clone()),
        }
    }
}

/// The result of a submission.
#[derive(Debug, Clone)]
pub(crate) struct Started {
    pub(crate) id: TaskId,
    pub(crate) ik: IdempotencyKey,
    pub(crate) attached: bool,
}

/// Control of a run that has a driver in this process.
#[derive(Debug)]
struct RunControl {
    generation: u64,
    stop: watch::Sender<bool>,
    driver: Option<AbortHandle>,
    handler: Option<AbortHandle>,
}

/// What stop, cancel and resume do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Stop,
    Cancel,
    Resume,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Stop => "stop",
            Action::Cancel => "cancel",
            Action::Resume => "resume",
        }
    }
}

pub(crate) struct Inner {
    pub(crate) store: DynStore,
    pub(crate) hub: Arc<Hub>,
    pub(crate) registry: Registry,
    pub(crate) config: Config,
    pub(crate) metrics: Arc<Metrics>,
    clock: MonotonicClock,
    runs: Mutex<HashMap<TaskId, RunControl>>,
    users: Mutex<HashMap<TaskId, UserContext>>,
    key_locks: Mutex<HashMap<IdempotencyKey, Arc<tokio::sync::Mutex<()>>>>,
    admission: Mutex<Admission>,
    shutdown: watch::Sender<bool>,
    active_drivers: watch::Sender<usize>,
    generations: AtomicU64,
    background: Mutex<Vec<AbortHandle>>,
    pub(crate) streams: streams::Streams,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TaskFlow {
    /// Starts configuring a flow.
    pub fn builder() -> TaskFlowBuilder {
        TaskFlowBuilder::default()
    }

    async fn open(
        choice: StoreChoice,
        registry: Registry,
        clock: Arc<dyn Clock>,
        config: Config,
    ) -> Result<Self, BuildError> {
        let metrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::default());
        let store: DynStore = match choice {
            StoreChoice::DataDir(dir) => {
                let path = builder::database_path(&dir)?;
                let (hub, metrics) = (hub.clone(), metrics.clone());
                tokio::task::spawn_blocking(move || RedbStore::open(&path, hub, metrics))
                    .await
                    .map_err(|e| BuildError::Storage(StoreError::io(e)))?
                    .map(Arc::new)?
            }
            #[cfg(feature = "test-util")]
            StoreChoice::Backend(dir, backend) => {
                let path = builder::database_path(&dir)?;
                Arc::new(RedbStore::open_with_backend(
                    &path,
                    backend,
                    hub.clone(),
                    metrics.clone(),
                )?)
            }
        };
        let inner = Arc::new(Inner {
            store,
            hub,
            registry,
            admission: Mutex::new(Admission::new(config.limits)),
            config,
            metrics,
            clock: MonotonicClock::new(clock),
            runs: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
            key_locks: Mutex::new(HashMap::new()),
            shutdown: watch::channel(false).0,
            active_drivers: watch::channel(0).0,
            generations: AtomicU64::new(1),
            background: Mutex::new(Vec::new()),
            streams: streams::Streams::default(),
        });
        recovery::recover(&inner).await?;
        retention::spawn_collector(&inner);
        Ok(Self { inner })
    }

    /// Returns a scope whose calls run as `user` and own what they create.
    #[must_use]
    pub fn as_user(&self, user: &UserContext) -> UserScope {
        UserScope::new(self.clone(), Scope::user(user))
    }

    /// A copy of the counters.
    #[must_use]
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
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

    /// Test hook: simulates `kill -9`. Aborts every handler, drops queued writes, writes
    /// nothing more and releases the data dir, so the same process can open it again.
    #[cfg(feature = "test-util")]
    pub fn crash(&self) {
        self.inner.crash();
    }

    pub(crate) fn scope_api(&self) -> (&Arc<Inner>, Scope) {
        (&self.inner, Scope::service())
    }
}

scope::scoped_api!(TaskFlow);

impl Inner {
    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub(crate) fn check_payload(
        &self,
        kind: PayloadKind,
        value: &serde_json::Value,
    ) -> Result<(), PayloadTooLarge> {
        let limit = self.config.payload_limit;
        let mut counter = ByteCounter { n: 0, limit };
        // Counting stops early once over the limit; an Err here only means "too large".
        let _ = serde_json::to_writer(&mut counter, value);
        if counter.n > limit {
            return Err(PayloadTooLarge {
                kind,
                size: counter.n,
                limit,
            });
        }
        Ok(())
    }

    pub(crate) fn check_payload_len(
        &self,
        kind: PayloadKind,
        size: usize,
    ) -> Result<(), PayloadTooLarge> {
        let limit = self.config.payload_limit;
        if size > limit {
            return Err(PayloadTooLarge { kind, size, limit });
        }
        Ok(())
    }

    async fn lock_key(&self, ik: &IdempotencyKey) -> OwnedMutexGuard<()> {
        let mutex = {
            let mut locks = lock(&self.key_locks);
            if locks.len() > 1024 {
                locks.retain(|_, m| Arc::strong_count(m) > 1);
            }
            locks.entry(ik.clone()).or_default().clone()
        };
        mutex.lock_owned().await
    }

    /// The key's current run if `scope` owns it.
    pub(crate) async fn owned_run(
        &self,
        scope: &Scope,
        ik: &IdempotencyKey,
    ) -> Result<(TaskRecord, Seq), ControlError> {
        match self.store.current_run(ik).await? {
            (Some(record), last) if record.owner == scope.owner => Ok((record, last)),
            _ => Err(ControlError::NotFound),
        }
    }

    fn remember_user(&self, id: TaskId, scope: &Scope) {
        if let Some(user) = &scope.user {
            lock(&self.users).insert(id, user.clone());
        }
    }

    pub(crate) fn live_user(&self, id: TaskId) -> Option<UserContext> {
        lock(&self.users).get(&id).cloned()
    }

    pub(crate) fn forget_user(&self, id: TaskId) {
        lock(&self.users).remove(&id);
    }

    pub(crate) async fn start(
        self: &Arc<Self>,
        scope: &Scope,
        task: &str,
        input: serde_json::Value,
        options: &StartOptions,
    ) -> Result<Started, StartError> {
        if self.is_shutting_down() {
            return Err(StartError::ShuttingDown);
        }
        if self.store.is_failed() {
            return Err(StartError::Storage(StoreError::FailStopped));
        }
        let registered = self
            .registry
            .get(task)
            .ok_or_else(|| StartError::UnknownTask(task.to_owned()))?;
        if registered.options.on_behalf_of && scope.user.is_none() {
            return Err(StartError::UserRequired(task.to_owned()));
        }
        self.check_payload(PayloadKind::Input, &input)?;
        let input = (registered.normalize_input)(input).map_err(|e| StartError::InvalidInput {
            path: e.path,
            message: e.message,
        })?;
        let ik = ik::idempotency_key(task, &input, scope.owner.as_ref());
        let span = tracing::info_span!("submit", task, ik = %ik);
        let _guard = self.lock_key(&ik).await;
        let (current, _) = self.store.current_run(&ik).await?;
        let mode = options
            .execute_mode
            .unwrap_or(registered.options.execute_mode);
        if let Some(run) = current {
            let attach = match run.status {
                TaskState::Created | TaskState::Running | TaskState::Completed => true,
                TaskState::Suspended => {
                    if !run.on_behalf_of || scope.user.is_some() {
                        self.remember_user(run.id, scope);
                        self.resume_run(&run).await?;
                    }
                    true
                }
                TaskState::Failed | TaskState::Cancelled => mode == ExecuteMode::AtMostOnce,
            };
            if attach {
                if !run.status.is_terminal() {
                    self.remember_user(run.id, scope);
                }
                tracing::debug!(parent: &span, task_id = %run.id, "attached");
                return Ok(Started {
                    id: run.id,
                    ik,
                    attached: true,
                });
            }
        }
        let now = self.now();
        lock(&self.admission)
            .check_new(scope.owner.as_ref(), now)
            .map_err(|refusal| match refusal {
                Refusal::RateLimited(retry_after) => StartError::RateLimited { retry_after },
                Refusal::QueueFull(limit) => StartError::QueueFull { limit },
            })?;
        let record = TaskRecord::new_run(
            task,
            ik.clone(),
            scope.owner.clone(),
            input,
            options
                .max_attempts
                .unwrap_or(registered.options.max_attempts)
                .max(1),
            mode,
            registered.options.on_behalf_of,
            now,
        );
        let committed = self
            .store
            .commit(WriteBatch::new(vec![Write::CreateRun(Box::new(record))]))
            .await?;
        let Some(Committed::Run { id, .. }) = committed.first() else {
            return Err(StartError::Storage(StoreError::Corrupt(
                "store did not report the created run".into(),
            )));
        };
        let id = *id;
        Metrics::inc(&self.metrics.tasks_started);
        tracing::info!(parent: &span, task_id = %id, "created");
        self.remember_user(id, scope);
        self.admit(Ticket {
            id,
            owner: scope.owner.clone(),
        });
        Ok(Started {
            id,
            ik,
            attached: false,
        })
    }

    /// Runs the ticket now if a slot is free, else queues it.
    pub(crate) fn admit(self: &Arc<Self>, ticket: Ticket) {
        if self.is_shutting_down() {
            return;
        }
        let run_now = lock(&self.admission).admit(ticket.clone());
        if run_now {
            driver::spawn(self.clone(), ticket);
        }
    }

    /// Commits a state change with its lifecycle event, fenced by the record's epoch.
    pub(crate) async fn transition(
        &self,
        record: &TaskRecord,
        patch: TaskPatch,
        event: Option<(&str, serde_json::Value)>,
    ) -> Result<(), StoreError> {
        self.commit_patch(record.id, &record.ik, record.epoch, patch, event)
            .await
            .map(drop)
    }

    /// Commits `patch` (and `event`, if any) to run `id` unless its epoch moved past `epoch`.
    pub(crate) async fn commit_patch(
        &self,
        id: TaskId,
        ik: &IdempotencyKey,
        epoch: crate::ids::Epoch,
        patch: TaskPatch,
        event: Option<(&str, serde_json::Value)>,
    ) -> Result<Vec<Committed>, StoreError> {
        let mut writes = vec![Write::Update { task: id, patch }];
        if let Some((name, data)) = event {
            writes.push(Write::Event {
                ik: ik.clone(),
                task: id,
                name: name.to_owned(),
                data,
            });
        }
        let fence = Fence { task: id, epoch };
        self.store.commit(WriteBatch::fenced(fence, writes)).await
    }

    /// Fails a run that is not running in this process (recovery).
    pub(crate) async fn fail_run(
        &self,
        record: &TaskRecord,
        error: ErrorRecord,
    ) -> Result<(), StoreError> {
        let mut patch = TaskPatch::at(self.now());
        patch.status = Some(TaskState::Failed);
        patch.bump_epoch = true;
        let event = serde_json::json!({"message": error.message, "code": error.code});
        patch.error = Some(error);
        self.transition(record, patch, Some(("failed", event)))
            .await?;
        Metrics::inc(&self.metrics.tasks_failed);
        self.forget_user(record.id);
        Ok(())
    }

    /// Suspends a run, committing the `suspended` event, and fences its attempt.
    pub(crate) async fn suspend_run(
        &self,
        record: &TaskRecord,
        reason: &str,
    ) -> Result<(), StoreError> {
        let mut patch = TaskPatch::at(self.now());
        patch.status = Some(TaskState::Suspended);
        patch.suspended_reason = Some(Some(reason.to_owned()));
        patch.next_attempt_at = Some(None);
        patch.bump_epoch = true;
        let event = serde_json::json!({ "reason": reason });
        self.transition(record, patch, Some(("suspended", event)))
            .await
    }

    async fn resume_run(self: &Arc<Self>, record: &TaskRecord) -> Result<(), StoreError> {
        let mut patch = TaskPatch::at(self.now());
        patch.status = Some(TaskState::Created);
        patch.suspended_reason = Some(None);
        self.transition(record, patch, None).await?;
        self.admit(Ticket {
            id: record.id,
            owner: record.owner.clone(),
        });
        Ok(())
    }

    fn signal_stop(&self, id: TaskId) {
        lock(&self.admission).forget(id);
        if let Some(control) = lock(&self.runs).get(&id) {
            control.stop.send_replace(true);
        }
    }

    pub(crate) async fn control(
        self: &Arc<Self>,
        scope: &Scope,
        ik: &IdempotencyKey,
        action: Action,
        reason: Option<&str>,
    ) -> Result<TaskStatus, ControlError> {
        if let Some(reason) = reason {
            let len = reason.chars().count();
            if len > MAX_REASON_CHARS {
                return Err(ControlError::ReasonTooLong { len });
            }
        }
        if self.is_shutting_down() {
            return Err(ControlError::ShuttingDown);
        }
        let _guard = self.lock_key(ik).await;
        loop {
            let (record, last) = self.owned_run(scope, ik).await?;
            let state = record.status;
            let result = match (action, state) {
                (Action::Stop, TaskState::Suspended)
                | (Action::Cancel, TaskState::Cancelled)
                | (Action::Resume, TaskState::Created | TaskState::Running) => {
                    return Ok(status_of(&record, last));
                }
                (_, s) if s.is_terminal() => {
                    return Err(ControlError::InvalidState {
                        state: s,
                        action: action.verb(),
                    });
                }
                (Action::Stop, _) => {
                    let reason = reason.unwrap_or("stopped");
                    self.suspend_run(&record, reason).await
                }
                (Action::Cancel, _) => {
                    let reason = reason.unwrap_or("cancelled");
                    let mut patch = TaskPatch::at(self.now());
                    patch.status = Some(TaskState::Cancelled);
                    patch.suspended_reason = Some(Some(reason.to_owned()));
                    patch.next_attempt_at = Some(None);
                    patch.bump_epoch = true;
                    let event = serde_json::json!({ "reason": reason });
                    let done = self
                        .transition(&record, patch, Some(("cancelled", event)))
                        .await;
                    if done.is_ok() {
                        Metrics::inc(&self.metrics.tasks_cancelled);
                        self.forget_user(record.id);
                    }
                    done
                }
                (Action::Resume, _) => {
                    if record.on_behalf_of && scope.user.is_none() {
                        return Err(ControlError::InvalidState {
                            state,
                            action: "resume without a user context",
                        });
                    }
                    self.remember_user(record.id, scope);
                    self.resume_run(&record).await
                }
            };
            match result {
                // The run moved on between our read and our write: decide again.
                Err(StoreError::Fenced) => continue,
                Err(e) => return Err(e.into()),
                Ok(()) => {}
            }
            if matches!(action, Action::Stop | Action::Cancel) {
                self.signal_stop(record.id);
            }
            let (record, last) = self.owned_run(scope, ik).await?;
            return Ok(status_of(&record, last));
        }
    }

    pub(crate) async fn status(
        &self,
        scope: &Scope,
        ik: &IdempotencyKey,
    ) -> Result<TaskStatus, ControlError> {
        let (record, last) = self.owned_run(scope, ik).await?;
        Ok(status_of(&record, last))
    }

    pub(crate) async fn list(
        &self,
        scope: &Scope,
        filter: ListFilter,
    ) -> Result<Vec<TaskStatus>, ControlError> {
        let scan = Scan {
            owner: Some(scope.owner.clone()),
            states: filter.states,
            task: filter.task,
            updated_before: None,
            limit: None,
        };
        let limit = filter.limit.unwrap_or(100);
        let mut out = Vec::new();
        for record in self.store.scan(scan).await? {
            if out.len() >= limit {
                break;
            }
            // A key shows once: its current run (an older failed run is history).
            let (current, last) = self.store.current_run(&record.ik).await?;
            if current.as_ref().is_some_and(|c| c.id == record.id) {
                out.push(status_of(&record, last));
            }
        }
        Ok(out)
    }

    pub(crate) async fn subscribe(
        &self,
        scope: &Scope,
        ik: &IdempotencyKey,
        from: SubscribeFrom,
    ) -> Result<EventSubscription, ControlError> {
        // Listen before reading, so nothing committed in between is missed.
        let live = self.hub.receiver(ik);
        let (record, last) = self.owned_run(scope, ik).await?;
        let run_start = Seq(record.first_seq.0.saturating_sub(1));
        let after = match from {
            SubscribeFrom::After(k) if k <= last => k,
            _ => run_start,
        };
        Ok(EventSubscription::new(
            self.store.clone(),
            ik.clone(),
            live,
            self.shutdown.subscribe(),
            after,
            record.first_seq,
        ))
    }

    async fn wait_json(
        &self,
        scope: &Scope,
        ik: &IdempotencyKey,
    ) -> Result<serde_json::Value, WaitError> {
        let mut shutdown = self.shutdown.subscribe();
        loop {
            let mut live = self.hub.receiver(ik);
            let (record, _) = self.owned_run(scope, ik).await?;
            match record.status {
                TaskState::Completed => return Ok(record.output.unwrap_or_default()),
                TaskState::Failed => {
                    return Err(WaitError::Failed(record.error.unwrap_or(ErrorRecord {
                        message: "failed".into(),
                        code: "task_error".into(),
                        public: false,
                    })));
                }
                TaskState::Cancelled => {
                    return Err(WaitError::Cancelled {
                        reason: record.suspended_reason.unwrap_or_default(),
                    });
                }
                _ => {}
            }
            if *shutdown.borrow() {
                return Err(WaitError::Closed);
            }
            tokio::select! {
                _ = live.recv() => {}
                _ = shutdown.wait_for(|s| *s) => {}
            }
        }
    }

    /// Called by a driver when it exits: frees its slot and starts what the slot admits.
    fn driver_finished(self: &Arc<Self>, ticket: &Ticket, generation: u64) {
        {
            let mut runs = lock(&self.runs);
            if runs
                .get(&ticket.id)
                .is_some_and(|c| c.generation == generation)
            {
                runs.remove(&ticket.id);
            }
        }
        let admitted = lock(&self.admission).release(ticket.owner.as_ref());
        self.active_drivers
            .send_modify(|n| *n = n.saturating_sub(1));
        if self.is_shutting_down() {
            return;
        }
        for next in admitted {
            driver::spawn(self.clone(), next);
        }
    }

    async fn shutdown(&self) -> Result<(), StoreError> {
        self.shutdown.send_replace(true);
        for handle in lock(&self.background).drain(..) {
            handle.abort();
        }
        for control in lock(&self.runs).values() {
            control.stop.send_replace(true);
        }
        let mut active = self.active_drivers.subscribe();
        let deadline = self.config.stop_grace + std::time::Duration::from_secs(1);
        if tokio::time::timeout(deadline, active.wait_for(|n| *n == 0))
            .await
            .is_err()
        {
            tracing::warn!("handlers did not stop within the grace period; dropping them");
            for control in lock(&self.runs).values() {
                for handle in control.handler.iter().chain(control.driver.iter()) {
                    handle.abort();
                }
            }
        }
        self.store.close().await
    }

    #[cfg(feature = "test-util")]
    fn crash(&self) {
        self.shutdown.send_replace(true);
        self.store.crash();
        for handle in lock(&self.background).drain(..) {
            handle.abort();
        }
        for (_, control) in lock(&self.runs).drain() {
            for handle in control.handler.iter().chain(control.driver.iter()) {
                handle.abort();
            }
        }
    }
}

/// Counts serialised bytes, giving up once past the limit.
struct ByteCounter {
    n: usize,
    limit: usize,
}

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.n += buf.len();
        if self.n > self.limit {
            return Err(std::io::Error::other("over the limit"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(crate) fn status_of(record: &TaskRecord, last_seq: Seq) -> TaskStatus {
    TaskStatus {
        task_id: record.id,
        idempotency_key: record.ik.clone(),
        task: record.name.clone(),
        owner: record.owner.clone(),
        status: record.status,
        attempt: record.attempt,
        failed_attempts: record.failed_attempts,
        max_attempts: record.max_attempts,
        created_at: record.created_at,
        updated_at: record.updated_at,
        last_seq,
        output: record.output.clone(),
        error: record.error.clone(),
        suspended_reason: record.suspended_reason.clone(),
    }
}

pub(crate) fn handle_of<T: Task>(started: Started) -> TaskHandle<T> {
    TaskHandle {
        task_id: started.id,
        idempotency_key: started.ik,
        attached: started.attached,
        _task: PhantomData,
    }
}

// Compile-time check: handles are shared across tasks and threads.
const _: fn() = || {
    fn is<T: Send + Sync>() {}
    is::<TaskFlow>();
    is::<StoredEvent>();
};
