//! What every store's committer shares: the fail-stop and crash flags, the engine's hooks,
//! and how a group of write batches answers its writers once it committed (or failed).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::sync::oneshot;

use super::{Committed, PendingCommit, StoreHooks, WriteBatch};
use crate::error::StoreError;

/// Where a queued batch's outcome goes.
pub(crate) type Reply = oneshot::Sender<Result<Vec<Committed>, StoreError>>;

/// A batch waiting in a committer's queue.
pub(crate) struct Pending {
    pub(crate) batch: WriteBatch,
    pub(crate) reply: Reply,
}

/// A store's flags and hooks, shared by its handle and its committer.
#[derive(Debug, Default)]
pub(crate) struct StoreState {
    failed: AtomicBool,
    crashed: AtomicBool,
    /// Set once by `Store::attach`.
    hooks: OnceLock<StoreHooks>,
    /// A crash armed at an exact commit (the crash matrix).
    #[cfg(feature = "test-util")]
    crash_at: OnceLock<std::sync::Arc<crate::testing::CrashAtCommit>>,
}

impl StoreState {
    /// Keeps the hooks of the engine that opened the store (the first one, if two try).
    pub(crate) fn attach(&self, hooks: StoreHooks) {
        if self.hooks.set(hooks).is_err() {
            tracing::warn!("a store was attached to a second engine; keeping the first");
        }
    }

    /// The engine's hooks, or hooks that report to nobody before `attach`.
    pub(crate) fn hooks(&self) -> StoreHooks {
        self.hooks.get().cloned().unwrap_or_default()
    }

    pub(crate) fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    pub(crate) fn is_crashed(&self) -> bool {
        self.crashed.load(Ordering::Acquire)
    }

    /// Arms a crash at an exact commit (once per store).
    #[cfg(feature = "test-util")]
    pub(crate) fn arm_crash_at(&self, trigger: std::sync::Arc<crate::testing::CrashAtCommit>) {
        let _ = self.crash_at.set(trigger);
    }

    /// Before a group is written: crashes instead when the armed crash says so.
    pub(crate) fn crash_before_write(&self) -> bool {
        #[cfg(feature = "test-util")]
        if self.crash_at.get().is_some_and(|t| t.before_write()) {
            self.crash();
            return true;
        }
        false
    }

    /// Once a group is durable, before its writers hear of it: crashes instead when the armed
    /// crash says so.
    fn crash_after_write(&self) -> bool {
        #[cfg(feature = "test-util")]
        if self.crash_at.get().is_some_and(|t| t.after_write()) {
            self.crash();
            return true;
        }
        false
    }

    /// A simulated kill: nothing more is acknowledged.
    pub(crate) fn crash(&self) {
        self.crashed.store(true, Ordering::Release);
    }

    /// A commit failed: the store admits no more writes (after a failed fsync the page cache
    /// may hold what the disk lost), the metric says so, and one log line says what to do.
    /// Only the first failure is reported, and the metric and the line come before the flag:
    /// whoever sees the store failed finds both (only the committer calls this, and it checks
    /// the flag before its next group, so nothing is admitted meanwhile).
    pub(crate) fn fail_stop(&self, error: &dyn std::fmt::Display) {
        if self.is_failed() {
            return;
        }
        self.hooks().record_fail_stop();
        tracing::error!(
            %error,
            "taskflow storage commit failed; the store is now fail-stopped (no writes are admitted) and the process must be restarted; every acknowledged write is durable"
        );
        self.failed.store(true, Ordering::Release);
    }

    /// Queues `batch` with `send` (the committer's queue), unless the store is fail-stopped.
    pub(crate) fn enqueue(
        &self,
        batch: WriteBatch,
        send: impl FnOnce(Pending) -> Result<(), StoreError>,
    ) -> PendingCommit {
        if self.is_failed() {
            return Box::pin(async { Err(StoreError::FailStopped) });
        }
        let (reply, answer) = oneshot::channel();
        let sent = send(Pending { batch, reply });
        Box::pin(async move {
            sent?;
            answer.await.map_err(|_| StoreError::Closed)?
        })
    }

    /// Refuses every batch of `group` with the store's failure (`error` of the commit that
    /// fail-stopped it, or the fail-stop itself).
    pub(crate) fn refuse(group: Vec<Pending>, error: impl Fn() -> StoreError) {
        for p in group {
            // A writer that stopped waiting is no one to tell.
            let _ = p.reply.send(Err(error()));
        }
    }

    /// Answers the writers of a group whose transaction committed: unless the store crashed
    /// meanwhile (durable but never acknowledged, as after a kill right after the commit),
    /// records the commit, hands each batch's events to the engine in commit order, and
    /// replies to each writer.
    pub(crate) fn answer(
        &self,
        group: Vec<Pending>,
        outcomes: Vec<Result<Vec<Committed>, StoreError>>,
        started: Instant,
    ) {
        if self.crash_after_write() || self.is_crashed() {
            return;
        }
        let hooks = self.hooks();
        hooks.record_commit(started.elapsed(), group.len());
        for (pending, outcome) in group.into_iter().zip(outcomes) {
            if let Ok(committed) = &outcome {
                hooks.committed_batch(&pending.batch, committed);
            }
            let _ = pending.reply.send(outcome);
        }
    }
}
