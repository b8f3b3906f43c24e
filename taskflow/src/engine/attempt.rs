//! One attempt's state as the handler's [`TaskContext`](crate::TaskContext) sees it: the
//! recorded steps and events it replays, its call counters, its fence, and the writes it may
//! make. The context reaches the engine only through these methods.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::runs::Generation;
use super::{Inner, limits, lock};
use crate::clock::Timestamp;
use crate::context::StepOrigin;
use crate::error::{PayloadKind, PayloadTooLarge, StoreError};
use crate::identity::{UserContext, UserId};
use crate::ids::{Epoch, IdempotencyKey, StepKey, TaskId};
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::status::StoredEvent;
use crate::store::{Fence, PendingCommit, StepRecord, TaskPatch, Write, WriteBatch};
use crate::wait::Waiting;

/// Emits an attempt may have queued and not yet seen durable; `emit` waits beyond this.
pub(crate) const MAX_QUEUED_EMITS: usize = 1024;

/// An attempt's emits: the next position, and the queued writes not yet awaited.
#[derive(Default)]
struct EmitQueue {
    next_position: usize,
    pending: VecDeque<PendingCommit>,
}

/// What [`AttemptState::queue_emit`] did.
pub(crate) enum Emit<'a> {
    /// An earlier attempt logged a user event at this position: nothing was written.
    Replayed {
        position: usize,
        previous: &'a StoredEvent,
    },
    /// The write is queued.
    Queued,
}

/// What the driver knows about an attempt when it starts it.
pub(super) struct AttemptStart {
    pub(super) task_name: &'static str,
    pub(super) task_id: TaskId,
    pub(super) ik: IdempotencyKey,
    pub(super) epoch: Epoch,
    pub(super) attempt: u32,
    pub(super) is_recovery: bool,
    pub(super) owner: Option<UserId>,
    pub(super) user: Option<UserContext>,
    pub(super) previous_events: Vec<StoredEvent>,
    pub(super) steps: Vec<(StepKey, StepRecord)>,
    pub(super) stop: watch::Receiver<bool>,
    pub(super) generation: Generation,
}

/// Everything one attempt shares between its context clones.
pub(crate) struct AttemptState {
    inner: Arc<Inner>,
    task_name: &'static str,
    task_id: TaskId,
    ik: IdempotencyKey,
    epoch: Epoch,
    attempt: u32,
    is_recovery: bool,
    owner: Option<UserId>,
    user: Option<UserContext>,
    previous_events: Vec<StoredEvent>,
    recorded: Mutex<HashMap<StepKey, StepRecord>>,
    step_calls: Mutex<HashMap<String, u32>>,
    emits: Mutex<EmitQueue>,
    stop: watch::Receiver<bool>,
    /// The driver this attempt belongs to (a fenced write stops that driver, not a later one).
    generation: Generation,
    /// Set once the handler parked the run in a durable wait (committed): the driver then
    /// drops the handler and frees the slot, and (`Some(time)`) has the timer wake it then.
    parked: watch::Sender<Option<Option<Timestamp>>>,
}

impl AttemptState {
    pub(super) fn new(inner: Arc<Inner>, start: AttemptStart) -> Self {
        Self {
            inner,
            task_name: start.task_name,
            task_id: start.task_id,
            ik: start.ik,
            epoch: start.epoch,
            attempt: start.attempt,
            is_recovery: start.is_recovery,
            owner: start.owner,
            user: start.user,
            previous_events: start.previous_events,
            recorded: Mutex::new(start.steps.into_iter().collect()),
            step_calls: Mutex::new(HashMap::new()),
            emits: Mutex::new(EmitQueue::default()),
            stop: start.stop,
            generation: start.generation,
            parked: watch::channel(None).0,
        }
    }

    /// Resolves once the handler parked the run (with when the timer should wake it).
    pub(super) fn parked(&self) -> watch::Receiver<Option<Option<Timestamp>>> {
        self.parked.subscribe()
    }

    /// The flow's clock.
    pub(crate) fn now(&self) -> Timestamp {
        self.inner.now()
    }

    /// A write of this attempt was fenced off: the run was stopped, or (a shared store)
    /// another process took it over. Fires `cancelled()` so the handler stops.
    fn notice<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if matches!(result, Err(StoreError::Fenced)) {
            self.inner
                .runs
                .signal_stop_of(self.task_id, self.generation);
        }
        result
    }

    pub(crate) fn task_name(&self) -> &'static str {
        self.task_name
    }

    /// Starts (or re-attaches to) this run's child `n`: `task` with `input`.
    pub(crate) async fn start_child(
        &self,
        task: &str,
        input: serde_json::Value,
        n: u32,
    ) -> Result<IdempotencyKey, crate::StartError> {
        let parent = super::children::Parent {
            id: self.task_id,
            ik: &self.ik,
            owner: self.owner.as_ref(),
            user: self.user.as_ref(),
        };
        self.inner.start_child(&parent, task, input, n).await
    }

    /// How the child run of `ik` ended, or `None` while it has not.
    pub(crate) async fn child_outcome(
        &self,
        ik: &IdempotencyKey,
    ) -> Result<Option<super::children::ChildOutcome>, StoreError> {
        self.inner.child_outcome(ik).await
    }

    /// The `#[signals]` enum the task declares, if any.
    pub(crate) fn signal_schema(&self) -> Option<crate::SignalSchema> {
        self.inner
            .registry
            .get(self.task_name)
            .and_then(|r| r.options.signals)
    }

    pub(crate) fn task_id(&self) -> TaskId {
        self.task_id
    }

    pub(crate) fn ik(&self) -> &IdempotencyKey {
        &self.ik
    }

    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }

    pub(crate) fn is_recovery(&self) -> bool {
        self.is_recovery
    }

    pub(crate) fn user(&self) -> Option<&UserContext> {
        self.user.as_ref()
    }

    pub(crate) fn previous_events(&self) -> &[StoredEvent] {
        &self.previous_events
    }

    /// The app's value of type `T` given to the builder.
    pub(crate) fn app_state<T: std::any::Any + Send + Sync>(&self) -> Option<&T> {
        self.inner.state.get::<T>()
    }

    /// The stop signal: `true` once the run is stopped, cancelled or the flow shuts down.
    pub(crate) fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.clone()
    }

    pub(crate) fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// The key of the next call of step `name` in this attempt: `name#n`, n from 0.
    pub(crate) fn next_step_key(&self, name: &str) -> StepKey {
        StepKey::new(name, self.next_call(name))
    }

    /// The result recorded under `key` by an earlier attempt.
    pub(crate) fn recorded_step(&self, key: &StepKey) -> Option<StepRecord> {
        lock(&self.recorded).get(key).cloned()
    }

    /// Takes the position of the next user emit of this attempt (from 0) and, unless an
    /// earlier attempt already logged a user event at that position, makes its payload with
    /// `data` and queues its write. Both happen under one lock, so the emits of one attempt
    /// reach the log in position order even when clones of the context emit concurrently.
    /// Returns at once: the write is awaited later (backpressure, the next step, `flush`, the
    /// end of the attempt).
    pub(crate) fn queue_emit<E>(
        &self,
        name: &str,
        data: impl FnOnce() -> Result<serde_json::Value, E>,
    ) -> Result<Emit<'_>, E> {
        let mut queue = lock(&self.emits);
        let position = queue.next_position;
        queue.next_position += 1;
        if let Some(previous) = self.previous_events.get(position) {
            return Ok(Emit::Replayed { position, previous });
        }
        let write = Write::Event {
            ik: self.ik.clone(),
            task: self.task_id,
            name: name.to_owned(),
            data: data()?,
        };
        let batch = WriteBatch::fenced(self.fence(), vec![write]);
        queue.pending.push_back(self.inner.store.enqueue(batch));
        Ok(Emit::Queued)
    }

    /// Waits for the oldest queued emits until at most [`MAX_QUEUED_EMITS`] are in flight.
    pub(crate) async fn limit_backlog(&self) -> Result<(), StoreError> {
        loop {
            let oldest = {
                let mut queue = lock(&self.emits);
                if queue.pending.len() <= MAX_QUEUED_EMITS {
                    return Ok(());
                }
                queue.pending.pop_front()
            };
            if let Some(pending) = oldest {
                self.notice(pending.await)?;
            }
        }
    }

    /// Waits until every emit queued so far is durable; returns the first failure.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut lock(&self.emits).pending);
        let mut first = Ok(());
        for queued in pending {
            if let Err(e) = queued.await
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        self.notice(first)
    }

    pub(crate) fn check_payload(
        &self,
        kind: PayloadKind,
        value: &serde_json::Value,
    ) -> Result<(), PayloadTooLarge> {
        self.inner.check_payload(kind, value)
    }

    pub(crate) fn check_payload_len(
        &self,
        kind: PayloadKind,
        size: usize,
    ) -> Result<(), PayloadTooLarge> {
        limits::check_payload_len(self.inner.config.payload_limit, kind, size)
    }

    /// Tells the test step log (when one is given) that a step's body ran or its result was
    /// replayed.
    pub(crate) fn log_step(&self, key: &crate::ids::StepKey, origin: StepOrigin) {
        #[cfg(feature = "test-util")]
        if let Some(log) = &self.inner.config.step_log {
            log.record(self.task_id, key, origin);
        }
        #[cfg(not(feature = "test-util"))]
        let _ = (key, origin);
    }

    /// Counts a step for the metrics.
    pub(crate) fn count_step(&self, origin: StepOrigin) {
        let m = &self.inner.metrics;
        Metrics::inc(match origin {
            StepOrigin::Executed => &m.steps_executed,
            StepOrigin::Replayed => &m.steps_replayed,
        });
    }

    fn fence(&self) -> Fence {
        Fence {
            task: self.task_id,
            epoch: self.epoch,
        }
    }

    /// Records that the attempt is alive.
    pub(crate) async fn heartbeat(&self) -> Result<(), StoreError> {
        let mut patch = TaskPatch::at(self.inner.now());
        patch.heartbeat = true;
        let beat = self
            .inner
            .commit_fenced(self.task_id, &self.ik, self.epoch, patch, None)
            .await
            .map(drop);
        self.notice(beat)
    }

    /// Records a step result (an encoded [`StepRecord`]), fenced by this attempt's epoch,
    /// after every emit queued before it: the step returns once they and it are durable (they
    /// usually share its transaction).
    pub(crate) async fn commit_step(&self, key: StepKey, json: Vec<u8>) -> Result<(), StoreError> {
        let write = Write::Step {
            task: self.task_id,
            key,
            json,
        };
        self.commit_after_emits(vec![write]).await
    }

    /// Commits `writes` in one batch fenced by this attempt's epoch, behind every emit queued
    /// before it; returns once they and it are durable.
    async fn commit_after_emits(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let batch = WriteBatch::fenced(self.fence(), writes);
        let committed = {
            // Queued under the emit lock: behind every emit that took a position before it.
            let _queue = lock(&self.emits);
            self.inner.store.enqueue(batch)
        };
        let emitted = self.flush().await;
        let written = self.notice(committed.await.map(drop));
        emitted.and(written)
    }

    fn step_write(&self, key: StepKey, json: Vec<u8>) -> Write {
        Write::Step {
            task: self.task_id,
            key,
            json,
        }
    }

    fn lifecycle_write(&self, event: &Lifecycle) -> Write {
        Write::Event {
            ik: self.ik.clone(),
            task: self.task_id,
            name: event.name().to_owned(),
            data: event.data(),
        }
    }

    /// Parks the run in `waiting`: one batch records `start` (the wait's step, the first
    /// time), the wait on the run (a shared store lets the lease lapse when it is due, or
    /// never for a signal) and the `waiting` event; then the driver is told to end the
    /// attempt. When what it waits for (`recheck`) is there once the park is committed, it
    /// came meanwhile: the run is woken at once.
    pub(crate) async fn park(
        &self,
        start: Option<(StepKey, Vec<u8>)>,
        waiting: Waiting,
        recheck: Recheck<'_>,
    ) -> Result<(), StoreError> {
        let now = self.inner.now();
        let wake_at = waiting.until();
        let event = Lifecycle::Waiting(waiting.clone());
        let mut patch = TaskPatch::at(now);
        patch.waiting = Some(Some(waiting));
        patch.park_for = Some(wake_at.map_or(Duration::MAX, |at| at.since(now)));
        let fresh = start.is_some();
        let mut writes: Vec<Write> = start
            .into_iter()
            .map(|(key, json)| self.step_write(key, json))
            .collect();
        writes.push(Write::Update {
            task: self.task_id,
            patch,
        });
        // Only the wait's first park tells the stream: a run woken to look (a child ended,
        // a start-up wake) that parks again is still in the same wait.
        if fresh {
            writes.push(self.lifecycle_write(&event));
        }
        self.commit_after_emits(writes).await?;
        Metrics::inc(&self.inner.metrics.runs_parked);
        let arrived = match recheck {
            Recheck::Nothing => false,
            Recheck::Step(key) => self.fetch_step(key).await?.is_some(),
            Recheck::Children(iks) => self.inner.children_ended(iks).await?,
        };
        let wake_at = if arrived { Some(now) } else { wake_at };
        self.parked.send_replace(Some(wake_at));
        Ok(())
    }

    /// The record under `key`, read from the store (it may have arrived after the attempt
    /// started: a signal).
    pub(crate) async fn fetch_step(&self, key: &StepKey) -> Result<Option<StepRecord>, StoreError> {
        if let Some(known) = self.recorded_step(key) {
            return Ok(Some(known));
        }
        let steps = self
            .inner
            .store
            .steps_with_prefix(self.task_id, key.as_str())
            .await?;
        Ok(steps.into_iter().find(|(k, _)| k == key).map(|(_, r)| r))
    }

    /// The number the next call of `name` will get, without taking it.
    pub(crate) fn peek_call(&self, name: &str) -> u32 {
        lock(&self.step_calls).get(name).copied().unwrap_or(0)
    }

    /// The number of the next call of `name` in this attempt (from 0).
    pub(crate) fn next_call(&self, name: &str) -> u32 {
        let mut calls = lock(&self.step_calls);
        let n = match calls.get_mut(name) {
            Some(n) => n,
            None => calls.entry(name.to_owned()).or_insert(0),
        };
        let this = *n;
        *n += 1;
        this
    }

    /// Records that a wait is over: its end steps, after `start` (the wait's own step, when
    /// it never parked), and, when it had parked, the `wait_ended` event.
    pub(crate) async fn end_wait(
        &self,
        start: Option<(StepKey, Vec<u8>)>,
        ends: Vec<(StepKey, Vec<u8>)>,
        ended: Option<Lifecycle>,
    ) -> Result<(), StoreError> {
        let mut writes: Vec<Write> = start
            .into_iter()
            .chain(ends)
            .map(|(key, json)| self.step_write(key, json))
            .collect();
        writes.extend(ended.iter().map(|e| self.lifecycle_write(e)));
        self.commit_after_emits(writes).await
    }
}

/// What a park looks at once committed, to wake the run at once when it is already there.
pub(crate) enum Recheck<'a> {
    /// Nothing: the wait ends at its time.
    Nothing,
    /// This record (the signal waited for).
    Step(&'a StepKey),
    /// These child runs all ended.
    Children(&'a [IdempotencyKey]),
}
