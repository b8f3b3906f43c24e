//! A crash at an exact commit: the store stops right before writing its k-th commit group, or
//! right after the k-th is durable and before anyone hears of it (the two sides of a kill at
//! that commit). The crash matrix arms one per life.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

/// Which side of a commit a [`CrashMatrix`](super::CrashMatrix) crashes at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The k-th commit is never written.
    Before,
    /// The k-th commit is durable but never acknowledged.
    After,
}

#[derive(Debug)]
pub(crate) struct CrashAtCommit {
    at: u64,
    side: Side,
    committed: AtomicU64,
    fired: AtomicBool,
    notify: Notify,
}

impl CrashAtCommit {
    pub(crate) fn new(at: u64, side: Side) -> Self {
        Self {
            at,
            side,
            committed: AtomicU64::new(0),
            fired: AtomicBool::new(false),
            notify: Notify::new(),
        }
    }

    /// Called before a group is written: `true` when the store must crash instead.
    pub(crate) fn before_write(&self) -> bool {
        self.side == Side::Before
            && self.committed.load(Ordering::Acquire) + 1 == self.at
            && self.fire()
    }

    /// Called once a group is durable, before its writers are answered: `true` when the store
    /// must crash instead of answering.
    pub(crate) fn after_write(&self) -> bool {
        let n = self.committed.fetch_add(1, Ordering::AcqRel) + 1;
        self.side == Side::After && n == self.at && self.fire()
    }

    fn fire(&self) -> bool {
        if self.fired.swap(true, Ordering::AcqRel) {
            return true;
        }
        self.notify.notify_waiters();
        true
    }

    pub(crate) fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// Resolves once the crash happened.
    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.fired() {
                return;
            }
            notified.await;
        }
    }
}
