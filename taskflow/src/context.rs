//! What a handler sees: [`TaskContext`], with durable `step`s and replay-aware `emit`.

use std::future::Future;
use std::marker::PhantomData;
use std::panic::Location;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::engine::attempt::{AttemptState, Emit};
use crate::error::{PayloadKind, StoreError, TaskError};
use crate::identity::UserContext;
use crate::ids::{IdempotencyKey, StepKey, TaskId};
use crate::names::{validate_event_name, validate_name};
use crate::status::StoredEvent;
use crate::store::StepRecord;
use crate::task::Events;

/// Whether a step's value was computed now or read back from the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOrigin {
    /// The closure ran in this attempt and its result was committed.
    Executed,
    /// A recorded result was returned; the closure did not run.
    Replayed,
}

fn stopped() -> TaskError {
    TaskError::stopped("the task was stopped or cancelled; this attempt may not write any more")
}

pub(crate) fn store_error(e: StoreError) -> TaskError {
    match e {
        StoreError::Fenced => stopped(),
        other => TaskError::internal("storage_unavailable", other.to_string()),
    }
}

/// The handler's view of its run. Cheap to clone; all clones belong to one attempt.
pub struct TaskContext<E> {
    state: Arc<AttemptState>,
    _events: PhantomData<fn() -> E>,
}

impl<E> Clone for TaskContext<E> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            _events: PhantomData,
        }
    }
}

impl<E> std::fmt::Debug for TaskContext<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskContext")
            .field("task", &self.state.task_name())
            .field("task_id", &self.state.task_id())
            .field("attempt", &self.state.attempt())
            .finish_non_exhaustive()
    }
}

impl<E: Events> TaskContext<E> {
    pub(crate) fn new(state: Arc<AttemptState>) -> Self {
        Self {
            state,
            _events: PhantomData,
        }
    }

    /// This run's id.
    #[must_use]
    pub fn task_id(&self) -> TaskId {
        self.state.task_id()
    }

    /// This run's idempotency key.
    #[must_use]
    pub fn idempotency_key(&self) -> &IdempotencyKey {
        self.state.ik()
    }

    /// The attempt number, from 1.
    #[must_use]
    pub fn attempt(&self) -> u32 {
        self.state.attempt()
    }

    /// Whether this attempt resumes a run that a crash or restart interrupted.
    #[must_use]
    pub fn is_recovery(&self) -> bool {
        self.state.is_recovery()
    }

    /// The user events this run emitted in earlier attempts (replayed emits are skipped).
    #[must_use]
    pub fn previous_events(&self) -> &[StoredEvent] {
        self.state.previous_events()
    }

    /// The app's value of type `T`, given with
    /// [`TaskFlowBuilder::state`](crate::TaskFlowBuilder::state) (a pool, a client, a
    /// configuration). Per flow: two flows in one process have their own.
    ///
    /// # Errors
    /// `missing_state` (permanent) when the flow was built without a value of type `T`.
    ///
    /// ```no_run
    /// # use taskflow::prelude::*;
    /// struct Db(String);
    ///
    /// #[task]
    /// async fn report(ctx: TaskContext<NoEvents>, id: u64) -> Result<String, TaskError> {
    ///     let db = ctx.state::<Db>()?;
    ///     Ok(format!("{} #{id}", db.0))
    /// }
    /// ```
    pub fn state<T: std::any::Any + Send + Sync>(&self) -> Result<&T, TaskError> {
        self.state.app_state::<T>().ok_or_else(|| {
            TaskError::internal(
                "missing_state",
                format!(
                    "no value of type `{}` was given to TaskFlowBuilder::state; add `.state(value)` when building the flow",
                    std::any::type_name::<T>()
                ),
            )
        })
    }

    /// The live context of the user the run belongs to, if it has one in this process.
    #[must_use]
    pub fn user(&self) -> Option<&UserContext> {
        self.state.user()
    }

    /// Resolves when the run is stopped, cancelled or the flow shuts down. A handler that does
    /// not return soon after is dropped at its next `.await` once the grace period ends.
    pub async fn cancelled(&self) {
        let mut stop = self.state.stop_signal();
        // An Err means the run's control is gone, which also means: stop.
        let _ = stop.wait_for(|s| *s).await;
    }

    /// Whether [`cancelled`](Self::cancelled) has fired.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.state.is_stopped()
    }

    /// Records that the attempt is alive (the engine also does this every few seconds).
    ///
    /// # Errors
    /// When the attempt was stopped, or storage failed.
    pub async fn heartbeat(&self) -> Result<(), TaskError> {
        self.state.heartbeat().await.map_err(store_error)
    }

    /// Emits a progress event. It returns once the event is queued for the log, in order,
    /// without waiting for its fsync: queued events share the committer's group commits, and
    /// reach subscribers only once durable. The next [`step`](Self::step), the end of the
    /// attempt and [`flush`](Self::flush) wait for every earlier emit; a queued emit that
    /// failed surfaces there or at a later `emit`. At most 1,024 emits are in flight per
    /// attempt; beyond that `emit` waits for the oldest. A crash may lose queued events that
    /// no subscriber saw; the replay emits them again at their positions.
    ///
    /// On a retry or a recovery the handler runs again from the top: the n-th emit of the new
    /// attempt is skipped when the run's log already holds an n-th user event, so subscribers
    /// never see an event twice.
    ///
    /// # Errors
    /// When the attempt was stopped (code `stopped`), the event's name is invalid, its payload
    /// is over the limit (`payload_too_large`), or storage failed (now or for an earlier
    /// queued emit).
    pub async fn emit(&self, event: E) -> Result<(), TaskError> {
        let name = event.name();
        validate_event_name(name)
            .map_err(|e| TaskError::internal("invalid_event_name", e.to_string()))?;
        let queued = self.state.queue_emit(name, || {
            if self.state.is_stopped() {
                return Err(stopped());
            }
            let data = event
                .to_payload()
                .map_err(|e| TaskError::internal("invalid_event", e.to_string()))?;
            self.state
                .check_payload(PayloadKind::Event, &data)
                .map_err(|e| TaskError::internal("payload_too_large", e.to_string()))?;
            Ok(data)
        })?;
        if let Emit::Replayed { position, previous } = queued {
            if previous.name != name {
                tracing::warn!(
                    task = self.state.task_name(),
                    position,
                    recorded = %previous.name,
                    emitted = name,
                    "non-deterministic handler: the event at this position differs from the recorded one; branch only on input and step results"
                );
            } else if tracing::enabled!(tracing::Level::DEBUG)
                && event.to_payload().ok().as_ref() != Some(&previous.data)
            {
                tracing::debug!(
                    task = self.state.task_name(),
                    position,
                    "replayed event payload differs from the recorded one"
                );
            }
            return Ok(());
        }
        self.state.limit_backlog().await.map_err(store_error)
    }

    /// Waits until every event emitted so far by this attempt is durable.
    ///
    /// # Errors
    /// The first failure of a queued emit: `stopped` when the attempt was fenced off, or the
    /// storage error.
    pub async fn flush(&self) -> Result<(), TaskError> {
        self.state.flush().await.map_err(store_error)
    }

    /// Runs `body` once per run, durably: the n-th call of `name` in an attempt has key
    /// `name#n`; when a result is recorded under that key it is returned without calling
    /// `body`, otherwise `body` runs and its `Ok` value is committed before `step` returns (an
    /// `Err` is returned and not recorded).
    ///
    /// # Errors
    /// `body`'s error; `stopped` when the attempt was fenced off; `incompatible_state` when a
    /// recorded result no longer decodes as `T`; `payload_too_large`; `invalid_step_name`.
    #[track_caller]
    pub fn step<'a, T, F, Fut, Err>(
        &'a self,
        name: &str,
        body: F,
    ) -> impl Future<Output = Result<T, TaskError>> + Send + 'a
    where
        T: Serialize + DeserializeOwned + Send + 'a,
        F: FnOnce() -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, Err>> + Send + 'a,
        Err: Into<TaskError> + 'a,
    {
        let run = self.step_with_origin(name, body);
        async move { run.await.map(|(value, _)| value) }
    }

    /// Like [`step`](Self::step), and also tells whether the value was executed or replayed.
    ///
    /// # Errors
    /// As [`step`](Self::step).
    #[track_caller]
    pub fn step_with_origin<'a, T, F, Fut, Err>(
        &'a self,
        name: &str,
        body: F,
    ) -> impl Future<Output = Result<(T, StepOrigin), TaskError>> + Send + 'a
    where
        T: Serialize + DeserializeOwned + Send + 'a,
        F: FnOnce() -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, Err>> + Send + 'a,
        Err: Into<TaskError> + 'a,
    {
        let site = Location::caller();
        // The key is fixed now, at call time, so concurrent steps get keys in call order.
        let key = validate_name(name)
            .map(|()| self.state.next_step_key(name))
            .map_err(|e| TaskError::internal("invalid_step_name", e.to_string()));
        async move {
            let key = key?;
            let site = format!("{}:{}:{}", site.file(), site.line(), site.column());
            if let Some(record) = self.state.recorded_step(&key) {
                return self
                    .replay(&key, record, &site)
                    .map(|v| (v, StepOrigin::Replayed));
            }
            if self.state.is_stopped() {
                return Err(stopped());
            }
            let span = tracing::debug_span!("step", task = self.state.task_name(), key = %key);
            let value = body().instrument(span).await.map_err(Into::into)?;
            self.state.log_step(&key, StepOrigin::Executed);
            // Serialised once: the size check and the stored record use the same bytes.
            let json = serde_json::to_vec(&value)
                .map_err(|e| TaskError::internal("invalid_step_result", e.to_string()))?;
            self.state
                .check_payload_len(PayloadKind::StepResult, json.len())
                .map_err(|e| TaskError::internal("payload_too_large", e.to_string()))?;
            let json = StepRecord::encode(&key, &json, &site)
                .map_err(|e| TaskError::internal("invalid_step_result", e.to_string()))?;
            self.state
                .commit_step(key, json)
                .await
                .map_err(store_error)?;
            self.state.count_step(StepOrigin::Executed);
            Ok((value, StepOrigin::Executed))
        }
    }

    /// Sleeps durably for `duration`: the wake-up time is committed, and the run is parked
    /// in the store until then, holding no concurrency slot and no tokio task (the attempt
    /// ends here and a new one replays up to this point when it is due). After a crash or a
    /// restart it sleeps only the remainder; a stop or cancel ends the wait. The time is the
    /// flow's [`Clock`](crate::Clock). While parked, the status says `waiting: {"kind":
    /// "sleep", "until": ...}` and the stream carries `waiting` then `wait_ended`.
    ///
    /// A zero duration (or a time already past) records nothing but the call and returns.
    ///
    /// # Errors
    /// `stopped` when the attempt was fenced off; `storage_unavailable` when the store failed.
    #[track_caller]
    pub fn sleep(
        &self,
        duration: std::time::Duration,
    ) -> impl Future<Output = Result<(), TaskError>> + Send + '_ {
        self.sleep_to(move |now| now.plus(duration), Location::caller())
    }

    /// Sleeps durably until `until` by the flow's clock (see [`sleep`](Self::sleep)).
    ///
    /// # Errors
    /// As [`sleep`](Self::sleep).
    #[track_caller]
    pub fn sleep_until(
        &self,
        until: crate::Timestamp,
    ) -> impl Future<Output = Result<(), TaskError>> + Send + '_ {
        self.sleep_to(move |_| until, Location::caller())
    }

    async fn sleep_to(
        &self,
        target: impl FnOnce(crate::Timestamp) -> crate::Timestamp + Send,
        site: &'static Location<'static>,
    ) -> Result<(), TaskError> {
        // Internal keys (`$` is outside the step-name grammar): the start records the
        // wake-up time, the end that the wait is over.
        let start_key = self.state.next_step_key("$sleep");
        let end_key = self.state.next_step_key("$woke");
        if self.state.recorded_step(&end_key).is_some() {
            return Ok(());
        }
        if self.state.is_stopped() {
            return Err(stopped());
        }
        let site = format!("{}:{}:{}", site.file(), site.line(), site.column());
        let encode = |key: &StepKey, value: u64| {
            StepRecord::encode(key, value.to_string().as_bytes(), &site)
                .map_err(|e| TaskError::internal("invalid_step_result", e.to_string()))
        };
        let (until, start) = match self.state.recorded_step(&start_key) {
            Some(record) => {
                let ms = record.value.as_u64().ok_or_else(|| {
                    TaskError::internal(
                        "incompatible_state",
                        format!(
                            "task `{}`, sleep `{start_key}`: the recorded wake-up time is not a number",
                            self.state.task_name()
                        ),
                    )
                })?;
                (crate::Timestamp::from_millis(ms), None)
            }
            None => {
                let until = target(self.state.now());
                let json = encode(&start_key, until.as_millis())?;
                (until, Some((start_key, json)))
            }
        };
        if self.state.now() >= until {
            // Due: the end is recorded with the start when it never parked, and tells the
            // stream when it did.
            let ended = start.is_none().then_some(crate::Lifecycle::WaitEnded {
                kind: crate::WaitKind::Sleep,
            });
            let end = encode(&end_key, until.as_millis())?;
            return self
                .state
                .end_wait(start, (end_key, end), ended)
                .await
                .map_err(store_error);
        }
        self.state
            .park(start, crate::Waiting::Sleep { until }, None)
            .await
            .map_err(store_error)?;
        // The driver drops this attempt now; a new one replays up to here when it is due.
        std::future::pending().await
    }

    /// Waits durably for the next signal `name` sent to this run
    /// ([`TaskFlow::signal`](crate::TaskFlow::signal)) and returns its payload as `T`: the
    /// n-th delivery for a name is the n-th signal of that name, exactly once, whether it
    /// arrived before the call (it was kept) or after (the run is parked in the store until
    /// then, holding no slot and no task, with `waiting: {"kind": "signal", "name": ...}` in
    /// its status and `waiting` / `wait_ended` on its stream). Survives restarts on both
    /// sides like a step.
    ///
    /// # Errors
    /// `invalid_step_name` for a name outside the grammar; `incompatible_state` when the
    /// payload does not decode as `T`; `stopped`; `storage_unavailable`.
    #[track_caller]
    pub fn wait_signal<T: DeserializeOwned + Send + 'static>(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<T, TaskError>> + Send + '_ {
        let wait = self.signal_wait::<T>(name, None, Location::caller());
        async move {
            match wait.await? {
                Some(value) => Ok(value),
                None => Err(TaskError::internal(
                    "invalid_state",
                    "a signal wait without a timeout timed out",
                )),
            }
        }
    }

    /// [`wait_signal`](Self::wait_signal) for at most `timeout` (by the flow's clock, durably:
    /// the deadline is committed and a restart waits only the rest): `None` when it passed
    /// first. A signal that arrives after that is kept for the next wait of its name.
    ///
    /// # Errors
    /// As [`wait_signal`](Self::wait_signal).
    #[track_caller]
    pub fn wait_signal_for<T: DeserializeOwned + Send + 'static>(
        &self,
        name: &str,
        timeout: std::time::Duration,
    ) -> impl Future<Output = Result<Option<T>, TaskError>> + Send + '_ {
        self.signal_wait::<T>(name, Some(timeout), Location::caller())
    }

    /// One signal wait. Each call has its own markers (`$waiting:` when it parked, with its
    /// deadline; `$received:` when a parked wait got its signal; `$timedout:` when it gave
    /// up), so a replay decides as the first run did; the signal it delivers is the name's
    /// next undelivered one (a timed-out wait delivers none).
    fn signal_wait<T: DeserializeOwned + Send + 'static>(
        &self,
        name: &str,
        timeout: Option<std::time::Duration>,
        site: &'static Location<'static>,
    ) -> impl Future<Output = Result<Option<T>, TaskError>> + Send + '_ {
        let name = validate_name(name)
            .map(|()| name.to_owned())
            .map_err(|e| TaskError::internal("invalid_step_name", e.to_string()));
        async move {
            let name = name?;
            let call = self.state.next_call(&format!("$waitcall:{name}"));
            let delivered = format!("$wait:{name}");
            let n = self.state.peek_call(&delivered);
            let signal = crate::store::signal_key(&name, n);
            let start_key = StepKey::new(&format!("$waiting:{name}"), call);
            let end_key = StepKey::new(&format!("$received:{name}"), call);
            let timed_out_key = StepKey::new(&format!("$timedout:{name}"), call);
            let invalid =
                |e: serde_json::Error| TaskError::internal("invalid_step_result", e.to_string());
            let decode = |record: StepRecord| -> Result<Option<T>, TaskError> {
                serde_json::from_value(record.value).map(Some).map_err(|e| {
                    TaskError::internal(
                        "incompatible_state",
                        format!(
                            "task `{}`, signal `{signal}`: the payload does not decode: {e}",
                            self.state.task_name()
                        ),
                    )
                })
            };
            if self.state.recorded_step(&timed_out_key).is_some() {
                return Ok(None);
            }
            if self.state.recorded_step(&end_key).is_some()
                && let Some(record) = self.state.recorded_step(&signal)
            {
                self.state.next_call(&delivered);
                return decode(record);
            }
            if self.state.is_stopped() {
                return Err(stopped());
            }
            let site = format!("{}:{}:{}", site.file(), site.line(), site.column());
            let started = self.state.recorded_step(&start_key);
            let parked_before = started.is_some();
            let deadline = match &started {
                Some(record) => record.value.as_u64().map(crate::Timestamp::from_millis),
                None => timeout.map(|t| self.state.now().plus(t)),
            };
            let ended = || {
                parked_before.then_some(crate::Lifecycle::WaitEnded {
                    kind: crate::WaitKind::Signal,
                })
            };
            if let Some(record) = self.state.fetch_step(&signal).await.map_err(store_error)? {
                self.state.next_call(&delivered);
                if parked_before {
                    // The wait had begun: say on the stream that it is over.
                    let end = StepRecord::encode(&end_key, b"null", &site).map_err(invalid)?;
                    self.state
                        .end_wait(None, (end_key, end), ended())
                        .await
                        .map_err(store_error)?;
                }
                return decode(record);
            }
            if deadline.is_some_and(|d| self.state.now() >= d) {
                let end = StepRecord::encode(&timed_out_key, b"null", &site).map_err(invalid)?;
                self.state
                    .end_wait(None, (timed_out_key, end), ended())
                    .await
                    .map_err(store_error)?;
                return Ok(None);
            }
            let start = if parked_before {
                None
            } else {
                let value =
                    deadline.map_or_else(|| "null".to_owned(), |d| d.as_millis().to_string());
                let json =
                    StepRecord::encode(&start_key, value.as_bytes(), &site).map_err(invalid)?;
                Some((start_key, json))
            };
            let waiting = crate::Waiting::Signal {
                name,
                until: deadline,
            };
            self.state
                .park(start, waiting, Some(&signal))
                .await
                .map_err(store_error)?;
            // The driver drops this attempt now; the signal (or the deadline) wakes the run.
            std::future::pending().await
        }
    }

    fn replay<T: DeserializeOwned>(
        &self,
        key: &StepKey,
        record: StepRecord,
        site: &str,
    ) -> Result<T, TaskError> {
        if record.site != site {
            tracing::warn!(
                task = self.state.task_name(),
                step = %key,
                recorded_at = %record.site,
                called_at = site,
                "step replayed from a different call site; step names must be unique per call site and the handler deterministic"
            );
        }
        self.state.log_step(key, StepOrigin::Replayed);
        self.state.count_step(StepOrigin::Replayed);
        serde_json::from_value(record.value).map_err(|e| {
            TaskError::internal(
                "incompatible_state",
                format!(
                    "task `{}`, step `{key}`: the recorded result no longer decodes: {e}",
                    self.state.task_name()
                ),
            )
        })
    }
}
