//! The port: the narrow, crate-private API that the layers above the engine (the HTTP bridge,
//! later the console) use. Nothing above the engine reads [`Inner`]; everything it needs is a
//! method here, so fencing, metrics and the live user table stay inside the engine.
//!
//! Calls take a [`Scope`]: who the caller is. A key owned by someone else is indistinguishable
//! from an unknown key, as on the public API.

use std::any::Any;
use std::sync::{Arc, Weak};

use super::builder::Environment;
use super::control::Action;
use super::handle::{AnyTask, TaskHandle};
use super::scope::{Scope, StartOptions};
use super::subscription::EventSubscription;
use super::{Inner, TaskFlow};
use crate::error::{ControlError, StartError};
use crate::identity::UserId;
use crate::ids::{IdempotencyKey, Seq, TaskId};
use crate::status::{ListFilter, SubscribeFrom, TaskState, TaskStatus};
use crate::task::TaskOptions;

pub(crate) use super::hub::SharedEvent;

/// A cheap handle on the engine for the bridge.
#[derive(Clone)]
pub(crate) struct Port {
    inner: Arc<Inner>,
}

/// A port that does not keep the engine alive (for timers that may outlive the flow).
#[derive(Clone)]
pub(crate) struct WeakPort {
    inner: Weak<Inner>,
}

impl WeakPort {
    /// The port, if the flow still exists.
    pub(crate) fn upgrade(&self) -> Option<Port> {
        self.inner.upgrade().map(|inner| Port { inner })
    }
}

/// What the bridge needs to know about the current run of a key before it streams.
#[derive(Debug, Clone)]
pub(crate) struct RunView {
    pub(crate) id: TaskId,
    pub(crate) owner: Option<UserId>,
    pub(crate) status: TaskState,
    /// The key's last seq (it outlives deleted runs).
    pub(crate) last_seq: Seq,
    /// Seq of this run's first event: older events belong to earlier runs of the key.
    pub(crate) first_seq: Seq,
}

/// A run recovered at start-up that the bridge had been watching with the disconnect rule.
#[derive(Debug, Clone)]
pub(crate) struct WatchedRun {
    pub(crate) id: TaskId,
    pub(crate) ik: IdempotencyKey,
    pub(crate) owner: Option<UserId>,
    pub(crate) grace: std::time::Duration,
}

impl TaskFlow {
    /// The bridge's view of this flow.
    pub(crate) fn port(&self) -> Port {
        Port {
            inner: self.inner.clone(),
        }
    }
}

impl Port {
    /// A copy of the flow's counters.
    pub(crate) fn metrics(&self) -> crate::metrics::MetricsSnapshot {
        self.inner.metrics.snapshot()
    }

    pub(crate) fn downgrade(&self) -> WeakPort {
        WeakPort {
            inner: Arc::downgrade(&self.inner),
        }
    }

    pub(crate) fn environment(&self) -> Environment {
        self.inner.config.environment
    }

    /// Bytes of JSON allowed for an input (the HTTP body limit equals it).
    pub(crate) fn payload_limit(&self) -> usize {
        self.inner.config.payload_limit
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.inner.is_shutting_down()
    }

    /// The caps on open SSE streams: in all, and per user.
    pub(crate) fn stream_limits(&self) -> (usize, usize) {
        (
            self.inner.config.max_streams,
            self.inner.config.max_streams_per_user,
        )
    }

    /// How long an SSE client may read nothing before its stream is dropped.
    pub(crate) fn stalled_stream_after(&self) -> std::time::Duration {
        self.inner.config.stalled_stream_after
    }

    /// How long `serve` waits for a request's head.
    pub(crate) fn header_read_timeout(&self) -> std::time::Duration {
        self.inner.config.header_read_timeout
    }

    /// The options of the registered task `name`.
    pub(crate) fn task_options(&self, name: &str) -> Option<TaskOptions> {
        self.inner.registry.get(name).map(|r| r.options.clone())
    }

    /// Whether other processes share the store (the disconnect rule then counts their
    /// streams too).
    pub(crate) fn is_shared(&self) -> bool {
        self.inner.store.lease().is_some()
    }

    /// The disconnect grace recorded with run `id` (a run another process's bridge started).
    pub(crate) async fn recorded_disconnect_grace(
        &self,
        id: TaskId,
    ) -> Option<std::time::Duration> {
        let record = self.inner.store.task(id).await.ok().flatten()?;
        record
            .disconnect_grace_ms
            .map(std::time::Duration::from_millis)
    }

    /// Records the streams this process has open for run `id` (shared stores).
    pub(crate) async fn record_streams(&self, id: TaskId, open: usize) {
        if let Err(e) = self.inner.store.record_streams(id, open).await {
            tracing::warn!(task_id = %id, error = %e, "could not record the run's open streams");
        }
    }

    /// Streams other live processes have open for run `id`; on an error, counts one (never
    /// stop a run on a guess).
    pub(crate) async fn streams_elsewhere(&self, id: TaskId) -> usize {
        match self.inner.store.streams_elsewhere(id).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(task_id = %id, error = %e, "could not count the run's streams elsewhere");
                1
            }
        }
    }

    /// Takes the recovered runs the bridge watched before the restart (once).
    pub(crate) fn take_recovered_watched(&self) -> Vec<WatchedRun> {
        std::mem::take(&mut *super::lock(&self.inner.recovered_watched))
    }

    /// The flow's `T` (created on first use): per-flow state of the layer above.
    pub(crate) fn extension<T: Any + Default + Send + Sync>(&self) -> Arc<T> {
        self.inner.extensions.get_or_default::<T>()
    }

    pub(crate) async fn start(
        &self,
        scope: &Scope,
        task: &str,
        input: serde_json::Value,
        options: &StartOptions,
    ) -> Result<TaskHandle<AnyTask>, StartError> {
        self.inner.start(scope, task, input, options).await
    }

    pub(crate) async fn run(
        &self,
        scope: &Scope,
        ik: &IdempotencyKey,
    ) -> Result<RunView, ControlError> {
        let (record, last_seq) = self.inner.owned_run(scope, ik).await?;
        Ok(RunView {
            id: record.id,
            owner: record.owner,
            status: record.status,
            last_seq,
            first_seq: record.first_seq,
        })
    }

    pub(crate) async fn subscribe(
        &self,
        scope: &Scope,
        ik: &IdempotencyKey,
        from: SubscribeFrom,
    ) -> Result<EventSubscription, ControlError> {
        self.inner.subscribe(scope, ik, from).await
    }

    pub(crate) async fn status(
        &self,
        scope: &Scope,
        ik: &IdempotencyKey,
    ) -> Result<TaskStatus, ControlError> {
        self.inner.status(scope, ik).await
    }

    pub(crate) async fn list(
        &self,
        scope: &Scope,
        filter: ListFilter,
    ) -> Result<Vec<TaskStatus>, ControlError> {
        self.inner.list(scope, filter).await
    }

    pub(crate) async fn control(
        &self,
        scope: &Scope,
        ik: &IdempotencyKey,
        action: Action,
        reason: Option<&str>,
    ) -> Result<TaskStatus, ControlError> {
        self.inner.control(scope, ik, action, reason).await
    }

    pub(crate) async fn signal(
        &self,
        scope: &Scope,
        ik: &IdempotencyKey,
        name: &str,
        payload: serde_json::Value,
        once: Option<&str>,
    ) -> Result<(), ControlError> {
        self.inner.signal(scope, ik, name, payload, once).await
    }
}
