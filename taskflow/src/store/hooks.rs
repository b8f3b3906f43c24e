//! [`StoreHooks`]: what a store reports to the engine that opened it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Committed, Write, WriteBatch};
use crate::ids::{IdempotencyKey, TaskId};
use crate::metrics::Metrics;
use crate::status::StoredEvent;

/// Receives committed events, in commit order, after they are durable, and what a shared
/// store hears of other processes.
pub(crate) trait CommitListener: Send + Sync + 'static {
    /// `events` were committed to `ik`'s log.
    fn committed(&self, ik: &IdempotencyKey, events: &[&StoredEvent]);

    /// Whether anyone here follows `ik` (a shared store reads other processes' events from
    /// the log only for keys someone follows).
    fn wants(&self, ik: &IdempotencyKey) -> bool;

    /// Another process moved run `id`'s epoch on (stopped, cancelled or claimed it).
    fn run_changed(&self, id: TaskId);

    /// A shared store's notifications flow (`true`) or stopped (`false`: followers poll the
    /// log until they flow again, then read it back once).
    fn listening(&self, on: bool);
}

/// The engine's side of a [`Store`](super::Store): committed events go to its live
/// subscribers, commit timings and the fail-stop to its metrics. Handed to the store once, by
/// [`Store::attach`](super::Store::attach); cheap to clone.
#[derive(Clone)]
pub struct StoreHooks {
    listener: Option<Arc<dyn CommitListener>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for StoreHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHooks")
            .field("attached", &self.listener.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for StoreHooks {
    /// Hooks that report to nobody (a store used before, or without, an engine).
    fn default() -> Self {
        Self {
            listener: None,
            metrics: Arc::default(),
        }
    }
}

impl StoreHooks {
    pub(crate) fn new(listener: Arc<dyn CommitListener>, metrics: Arc<Metrics>) -> Self {
        Self {
            listener: Some(listener),
            metrics,
        }
    }

    /// `events` were committed to `ik`'s log and are durable. Call it in commit order, before
    /// the commit resolves.
    pub fn committed(&self, ik: &IdempotencyKey, events: &[StoredEvent]) {
        self.committed_refs(ik, &events.iter().collect::<Vec<_>>());
    }

    fn committed_refs(&self, ik: &IdempotencyKey, events: &[&StoredEvent]) {
        self.metrics.events_committed.fetch_add(
            u64::try_from(events.len()).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
        if let Some(listener) = &self.listener {
            listener.committed(ik, events);
        }
    }

    /// Whether anyone here follows `ik`'s events; a shared store that hears of another
    /// process's commit reads the events back (and reports them with
    /// [`committed`](Self::committed)) only when this is `true`.
    #[must_use]
    pub fn wants_events(&self, ik: &IdempotencyKey) -> bool {
        self.listener.as_ref().is_some_and(|l| l.wants(ik))
    }

    /// Another process moved run `id`'s epoch on (it stopped, cancelled or claimed the
    /// run): a driver of that run here stops, and its handler sees `cancelled()`.
    pub fn run_changed_elsewhere(&self, id: TaskId) {
        if let Some(listener) = &self.listener {
            listener.run_changed(id);
        }
    }

    /// A shared store hears other processes' commits (`true`), or lost its notification
    /// connection (`false`): until it is back, followers poll the log; when it is, they read
    /// the log back once, so nothing committed meanwhile is missed.
    pub fn listening(&self, on: bool) {
        if let Some(listener) = &self.listener {
            listener.listening(on);
        }
    }

    /// Reports the events `batch` committed (`committed` is its outcome), grouped by key, in
    /// commit order.
    pub(crate) fn committed_batch(&self, batch: &WriteBatch, committed: &[Committed]) {
        if self.listener.is_none() || !committed.iter().any(|c| matches!(c, Committed::Event(_))) {
            return;
        }
        let mut by_key: Vec<(&IdempotencyKey, Vec<&StoredEvent>)> = Vec::new();
        for (write, done) in batch.writes.iter().zip(committed) {
            if let (Write::Event { ik, .. }, Committed::Event(event)) = (write, done) {
                match by_key.iter_mut().find(|(k, _)| *k == ik) {
                    Some((_, events)) => events.push(event),
                    None => by_key.push((ik, vec![event])),
                }
            }
        }
        for (ik, events) in by_key {
            self.committed_refs(ik, &events);
        }
    }

    /// One durable transaction carrying `batches` write batches took `took`.
    pub fn record_commit(&self, took: Duration, batches: usize) {
        let m = &self.metrics;
        let batches = u64::try_from(batches).unwrap_or(u64::MAX);
        Metrics::inc(&m.wal_commits);
        m.wal_batches.fetch_add(batches, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        m.wal_commit_micros.fetch_add(micros, Ordering::Relaxed);
        m.wal_max_group.fetch_max(batches, Ordering::Relaxed);
        m.commits.micros.observe(micros);
        m.commits.group.observe(batches);
    }

    /// The store failed a commit and is now fail-stopped.
    pub fn record_fail_stop(&self) {
        self.metrics.store_failed.store(1, Ordering::Relaxed);
    }
}
