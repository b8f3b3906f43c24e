//! The write-ahead log behind the engine.
//!
//! The engine talks to storage only through [`Store`], so the embedded redb store and the
//! multi-process PostgreSQL store (feature `postgres`) are interchangeable, and tests can
//! wrap either to inject I/O errors, count fsyncs or take crash images.
//!
//! Writes go in [`WriteBatch`]es: all-or-nothing, optionally fenced by a run's [`Epoch`] (the
//! store refuses the whole batch inside its transaction when the run's epoch moved on, which is
//! how a stopped attempt's late `step` or `emit` is rejected, here and across processes).
//! Sequence numbers are assigned inside the committing transaction. After a commit the store
//! reports the new events through its [`StoreHooks`], in commit order.
//!
//! How the multi-process PostgreSQL store (SPEC §7) maps onto this trait:
//! - **fencing**: the run's epoch is a column; a fenced batch is one transaction whose first
//!   statement is `SELECT epoch ... FOR UPDATE` (or an `UPDATE ... WHERE epoch = $1` that must
//!   touch one row), so a process that lost its lease cannot commit after a new owner bumped it;
//! - **leases**: `heartbeat_at` in [`TaskRecord`] is the lease; a process claims stale runs
//!   with `FOR UPDATE SKIP LOCKED` and takes them over with an epoch-bumping
//!   [`Write::Update`], the same write an attempt start makes here;
//! - **sequence numbers**: the key row is locked and advanced inside the transaction, exactly
//!   as the redb store does with its `keys` table, so seqs stay gapless per key;
//! - **notification**: after commit the store `NOTIFY`s the key; every process's listener
//!   reads the new events from the log and hands them to its [`StoreHooks`], so
//!   subscribers on any process see every event in order.

mod hooks;
#[cfg(feature = "postgres")]
mod postgres;
mod record;
mod redb;
mod state;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub(crate) use self::hooks::CommitListener;
pub use self::hooks::StoreHooks;
#[cfg(feature = "postgres")]
pub use self::postgres::{DEFAULT_SCHEMA, DEFAULT_STALE_THRESHOLD, PgConfig, PgStore};
#[cfg(all(feature = "postgres", feature = "test-util"))]
pub(crate) use self::postgres::{describe as postgres_describe, reason as postgres_reason};
pub use self::record::{Claim, StepRecord, StepTiming, TaskPatch, TaskRecord};
pub use self::redb::RedbStore;
#[cfg(feature = "test-util")]
pub use self::redb::StoreContents;
use crate::error::StoreError;
use crate::identity::UserId;
use crate::ids::{Epoch, IdempotencyKey, Seq, StepKey, TaskId};
use crate::status::{StoredEvent, TaskState};

/// A queued write batch: resolves once the batch is durable (or refused). It owns what it
/// needs, so it may outlive the call that queued it (pipelined emits keep several).
pub type PendingCommit = Pin<Box<dyn Future<Output = Result<Vec<Committed>, StoreError>> + Send>>;

/// A boxed future returned by [`Store`] methods.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Refuses a batch unless `task`'s current epoch equals `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    /// The run.
    pub task: TaskId,
    /// The epoch the writer holds.
    pub epoch: Epoch,
}

/// One write of a batch.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Write {
    /// Creates a run and makes it the key's current run. The store assigns `id`, `epoch` and
    /// `first_seq` (the key's last seq + 1). Yields [`Committed::Run`]. The batch is refused
    /// with [`StoreError::KeyTaken`] unless the key's current run is still `replaces` (what
    /// the caller saw; `None`: no current run): one current run per key holds across
    /// processes, and the one that loses the race attaches to the winner.
    CreateRun {
        /// The new run.
        record: Box<TaskRecord>,
        /// The key's current run the caller decided to replace, if any.
        replaces: Option<TaskId>,
    },
    /// Changes a run's record. Yields [`Committed::Epoch`] with the run's epoch after the write.
    Update {
        /// The run.
        task: TaskId,
        /// What changes.
        patch: TaskPatch,
    },
    /// Appends an event to a key's log with the next seq. Yields [`Committed::Event`].
    Event {
        /// The key whose log grows.
        ik: IdempotencyKey,
        /// The run that wrote it.
        task: TaskId,
        /// Wire name.
        name: String,
        /// Payload.
        data: serde_json::Value,
    },
    /// Records a step result. Yields [`Committed::Done`].
    Step {
        /// The run.
        task: TaskId,
        /// The step's key.
        key: StepKey,
        /// The [`StepRecord`] already encoded as JSON (encoded by the caller, off the
        /// committer's critical path; see [`StepRecord::encode`]).
        json: Vec<u8>,
    },
    /// Removes a run with its steps and events (retention), if it is still as the caller saw
    /// it: yields [`Committed::Done`] when removed, [`Committed::Kept`] when the run changed
    /// since (another state or a later update) or is gone. The key keeps its last seq so a
    /// later run never reuses a sequence number.
    DeleteRun {
        /// The run.
        task: TaskId,
        /// Remove it only while it is in this state with this `updated_at` (what the scan
        /// that chose it saw); `None` removes it whatever it is now.
        if_unchanged: Option<(TaskState, crate::clock::Timestamp)>,
    },
    /// Delivers a signal to a run: the store appends it as the run's next signal of `name`
    /// (n counted from 0 among those already there), recorded like a step under the key
    /// `$signal:{name}#{n}` with `payload` as its value. Yields [`Committed::Done`]; refused
    /// with [`StoreError::Fenced`] when the run is gone. With `once`, the store first looks
    /// for the record `$signalonce:{once}#0` of the run: when it is there the signal was
    /// delivered before and nothing is written ([`Committed::Kept`]); otherwise it writes
    /// that record (its value the signal's key) with the signal.
    Signal {
        /// The run.
        task: TaskId,
        /// The signal's name (step-name grammar, or an internal `$` name).
        name: String,
        /// Its payload.
        payload: serde_json::Value,
        /// The sender's key of a signal that may be retried.
        once: Option<String>,
    },
}

/// The key of the `n`-th signal `name` of a run.
pub(crate) fn signal_key(name: &str, n: u32) -> StepKey {
    StepKey::new(&format!("$signal:{name}"), n)
}

/// The record that a signal with the sender's key `once` reached a run.
pub(crate) fn signal_once_key(once: &str) -> StepKey {
    StepKey::new(&format!("$signalonce:{once}"), 0)
}

/// What one [`Write`] produced.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Committed {
    /// A run was created.
    Run {
        /// Its id.
        id: TaskId,
        /// Its epoch.
        epoch: Epoch,
        /// Seq its first event will get.
        first_seq: Seq,
    },
    /// The run's epoch after an update.
    Epoch(Epoch),
    /// An event with its assigned seq.
    Event(StoredEvent),
    /// Nothing to report.
    Done,
    /// A conditional delete found the run changed, and kept it.
    Kept,
}

/// An atomic group of writes.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    /// Refuse the batch unless this epoch is current.
    pub fence: Option<Fence>,
    /// The writes, applied in order.
    pub writes: Vec<Write>,
}

impl WriteBatch {
    /// An unfenced batch.
    #[must_use]
    pub fn new(writes: Vec<Write>) -> Self {
        Self {
            fence: None,
            writes,
        }
    }

    /// A batch fenced by `fence`.
    #[must_use]
    pub fn fenced(fence: Fence, writes: Vec<Write>) -> Self {
        Self {
            fence: Some(fence),
            writes,
        }
    }
}

/// Which runs a scan returns.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Scan {
    /// `Some(owner)`: only that owner's runs (`Some(None)` = the service identity's).
    pub owner: Option<Option<UserId>>,
    /// Only these states (all when empty).
    pub states: Vec<TaskState>,
    /// Only this task name.
    pub task: Option<String>,
    /// Only runs last updated before this time.
    pub updated_before: Option<crate::clock::Timestamp>,
    /// At most this many, newest first.
    pub limit: Option<usize>,
    /// Only runs with an id below this one (the next page of a listing).
    pub before: Option<TaskId>,
    /// Only runs that are their key's current run (a key shows once in a listing).
    pub current_only: bool,
    /// Only runs whose idempotency key starts with this.
    pub key_prefix: Option<String>,
}

/// Durable storage for runs, steps and events.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Called once by the engine that opens the store, before any other call: where the store
    /// reports committed events and its commit metrics.
    fn attach(&self, hooks: StoreHooks);

    /// Queues `batch` now, before returning, behind every batch queued before it, and
    /// returns a handle that resolves once the batch is durable and its events were reported
    /// through the hooks. Batches queued one after another commit in that order (their events
    /// get seqs in that order), so a caller may queue many and await them later: this is how
    /// emits are pipelined. A store may put many queued batches in one transaction.
    fn enqueue(&self, batch: WriteBatch) -> PendingCommit;

    /// Commits `batch` durably, then reports its events through the hooks, then resolves.
    fn commit(&self, batch: WriteBatch) -> StoreFuture<'_, Vec<Committed>> {
        self.enqueue(batch)
    }

    /// One run's record.
    fn task(&self, id: TaskId) -> StoreFuture<'_, Option<TaskRecord>>;

    /// The key's current run and the key's last seq (which outlives deleted runs).
    fn current_run<'a>(
        &'a self,
        ik: &'a IdempotencyKey,
    ) -> StoreFuture<'a, (Option<TaskRecord>, Seq)>;

    /// Up to `limit` events of `ik` with seq > `after`, in order.
    fn events<'a>(
        &'a self,
        ik: &'a IdempotencyKey,
        after: Seq,
        limit: usize,
    ) -> StoreFuture<'a, Vec<StoredEvent>>;

    /// Every recorded step of a run.
    fn steps(&self, task: TaskId) -> StoreFuture<'_, Vec<(StepKey, StepRecord)>>;

    /// The recorded steps of a run whose key starts with `prefix` (`$child#`), in key order.
    /// The default reads every step and filters; the stores read only those.
    fn steps_with_prefix<'a>(
        &'a self,
        task: TaskId,
        prefix: &'a str,
    ) -> StoreFuture<'a, Vec<(StepKey, StepRecord)>> {
        Box::pin(async move {
            let mut steps = self.steps(task).await?;
            steps.retain(|(key, _)| key.as_str().starts_with(prefix));
            Ok(steps)
        })
    }

    /// Runs matching `scan`.
    fn scan(&self, scan: Scan) -> StoreFuture<'_, Vec<TaskRecord>>;

    /// How many runs (current or not) are in each state, every state listed once.
    fn count_by_state(&self) -> StoreFuture<'_, Vec<(crate::status::TaskState, u64)>>;

    /// Gives space freed by deleted runs back to the file system.
    fn compact(&self) -> StoreFuture<'_, ()>;

    /// Whether an earlier commit failed (fail-stop).
    fn is_failed(&self) -> bool;

    /// Finishes queued writes and closes the database. Idempotent.
    fn close(&self) -> StoreFuture<'_, ()>;

    /// Takes over up to `limit` runs whose owner is gone, oldest first, and returns them as
    /// they are now (their epoch moved on, fencing off a former owner). The default, for a
    /// store only this process writes, is every `created` or `running` run: the previous
    /// process is gone (the engine reports those of tasks it does not know). A shared store
    /// returns only runs of the `tasks` this process registered (each `name@version`: a run
    /// of another version of its task is left to a process that has it) whose lease expired,
    /// never another live process's work, nor a run this process could not execute.
    fn claim_interrupted<'a>(
        &'a self,
        limit: usize,
        tasks: &'a [&'a str],
    ) -> StoreFuture<'a, Vec<TaskRecord>> {
        let _ = tasks;
        Box::pin(async move {
            let mut runs = self
                .scan(Scan {
                    states: vec![TaskState::Created, TaskState::Running],
                    ..Scan::default()
                })
                .await?;
            runs.sort_by_key(|r| r.id);
            runs.truncate(limit);
            Ok(runs)
        })
    }

    /// Takes up to `limit` runs of the `tasks` this process registered (`name@version`) that
    /// wait in another
    /// live process's queue (`created`, needing no live user context) for longer than
    /// `waited`, so a process with idle slots shares the work of a busy one. The runs are
    /// returned as they are now (their epoch moved on: the busy process drops them). The
    /// default, for a store only this process writes, is none.
    fn claim_queued<'a>(
        &'a self,
        limit: usize,
        tasks: &'a [&'a str],
        waited: std::time::Duration,
    ) -> StoreFuture<'a, Vec<TaskRecord>> {
        let _ = (limit, tasks, waited);
        Box::pin(async { Ok(Vec::new()) })
    }

    /// How long a lease of a shared store holds (its stale threshold); `None` for a store
    /// only this process writes. The engine renews leases and claims interrupted runs every
    /// heartbeat interval, and at least three times per lease.
    fn lease(&self) -> Option<std::time::Duration> {
        None
    }

    /// Renews the leases of every run this process holds (a shared store; the default does
    /// nothing).
    fn renew_leases(&self) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    /// Records that `open` SSE streams of this process follow run `task` (a shared store:
    /// the disconnect rule counts the clients of every process; the default keeps nothing).
    fn record_streams(&self, task: TaskId, open: usize) -> StoreFuture<'_, ()> {
        let _ = (task, open);
        Box::pin(async { Ok(()) })
    }

    /// SSE streams other live processes recorded for run `task` (the default: none).
    fn streams_elsewhere(&self, task: TaskId) -> StoreFuture<'_, usize> {
        let _ = task;
        Box::pin(async { Ok(0) })
    }

    /// Simulates `kill -9` for tests (`taskflow::testing::SimulateCrash`): drops queued
    /// writes, writes nothing more and releases the database. A store that cannot simulate
    /// it keeps this default, which does nothing.
    fn crash(&self) {}
}

/// A shared store is a store: keep an `Arc` to look at it (or to hand it to tooling) while a
/// flow uses it.
impl<S: Store + ?Sized> Store for Arc<S> {
    fn attach(&self, hooks: StoreHooks) {
        (**self).attach(hooks);
    }

    fn enqueue(&self, batch: WriteBatch) -> PendingCommit {
        (**self).enqueue(batch)
    }

    fn commit(&self, batch: WriteBatch) -> StoreFuture<'_, Vec<Committed>> {
        (**self).commit(batch)
    }

    fn task(&self, id: TaskId) -> StoreFuture<'_, Option<TaskRecord>> {
        (**self).task(id)
    }

    fn current_run<'a>(
        &'a self,
        ik: &'a IdempotencyKey,
    ) -> StoreFuture<'a, (Option<TaskRecord>, Seq)> {
        (**self).current_run(ik)
    }

    fn events<'a>(
        &'a self,
        ik: &'a IdempotencyKey,
        after: Seq,
        limit: usize,
    ) -> StoreFuture<'a, Vec<StoredEvent>> {
        (**self).events(ik, after, limit)
    }

    fn steps(&self, task: TaskId) -> StoreFuture<'_, Vec<(StepKey, StepRecord)>> {
        (**self).steps(task)
    }

    fn steps_with_prefix<'a>(
        &'a self,
        task: TaskId,
        prefix: &'a str,
    ) -> StoreFuture<'a, Vec<(StepKey, StepRecord)>> {
        (**self).steps_with_prefix(task, prefix)
    }

    fn scan(&self, scan: Scan) -> StoreFuture<'_, Vec<TaskRecord>> {
        (**self).scan(scan)
    }

    fn count_by_state(&self) -> StoreFuture<'_, Vec<(crate::status::TaskState, u64)>> {
        (**self).count_by_state()
    }

    fn compact(&self) -> StoreFuture<'_, ()> {
        (**self).compact()
    }

    fn is_failed(&self) -> bool {
        (**self).is_failed()
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        (**self).close()
    }

    fn crash(&self) {
        (**self).crash();
    }

    fn claim_interrupted<'a>(
        &'a self,
        limit: usize,
        tasks: &'a [&'a str],
    ) -> StoreFuture<'a, Vec<TaskRecord>> {
        (**self).claim_interrupted(limit, tasks)
    }

    fn renew_leases(&self) -> StoreFuture<'_, ()> {
        (**self).renew_leases()
    }

    fn lease(&self) -> Option<std::time::Duration> {
        (**self).lease()
    }

    fn claim_queued<'a>(
        &'a self,
        limit: usize,
        tasks: &'a [&'a str],
        waited: std::time::Duration,
    ) -> StoreFuture<'a, Vec<TaskRecord>> {
        (**self).claim_queued(limit, tasks, waited)
    }

    fn record_streams(&self, task: TaskId, open: usize) -> StoreFuture<'_, ()> {
        (**self).record_streams(task, open)
    }

    fn streams_elsewhere(&self, task: TaskId) -> StoreFuture<'_, usize> {
        (**self).streams_elsewhere(task)
    }
}

pub(crate) type DynStore = Arc<dyn Store>;
