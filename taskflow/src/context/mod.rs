//! What a handler sees: [`TaskContext`], with durable `step`s and replay-aware `emit`; its
//! durable waits (sleep, signals) are in `waits.rs`, its child runs in `children.rs`.

mod children;
mod waits;

use std::future::Future;
use std::marker::PhantomData;
use std::panic::Location;
use std::sync::Arc;

pub use self::children::ChildRun;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::engine::attempt::{AttemptState, Emit};
use crate::error::{PayloadKind, StoreError, TaskError};
use crate::identity::UserContext;
use crate::ids::{IdempotencyKey, StepKey, TaskId};
use crate::names::{validate_event_name, validate_name};
use crate::status::StoredEvent;
use crate::store::{StepRecord, StepTiming};
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
            let started = self.state.now();
            let value = body().instrument(span).await.map_err(Into::into)?;
            let timing = StepTiming {
                attempt: self.state.attempt(),
                at: started,
                duration_ms: u64::try_from(self.state.now().since(started).as_millis())
                    .unwrap_or(u64::MAX),
            };
            self.state.log_step(&key, StepOrigin::Executed);
            // Serialised once: the size check and the stored record use the same bytes.
            let json = serde_json::to_vec(&value)
                .map_err(|e| TaskError::internal("invalid_step_result", e.to_string()))?;
            self.state
                .check_payload_len(PayloadKind::StepResult, json.len())
                .map_err(|e| TaskError::internal("payload_too_large", e.to_string()))?;
            let json = StepRecord::encode_timed(&key, &json, &site, &timing)
                .map_err(|e| TaskError::internal("invalid_step_result", e.to_string()))?;
            self.state
                .commit_step(key, json)
                .await
                .map_err(store_error)?;
            self.state.count_step(StepOrigin::Executed);
            Ok((value, StepOrigin::Executed))
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
