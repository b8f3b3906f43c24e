//! The one thread that writes: group commit.
//!
//! Whatever is queued when the previous commit finishes goes into one transaction and one
//! fsync. A lone writer is committed at once (there is no linger timer): batching comes only
//! from writers that arrived while the disk was busy, so it costs nobody latency.

use std::collections::VecDeque;
use std::sync::{Arc, PoisonError, mpsc};
use std::time::Instant;

use redb::Durability;
use tokio::sync::oneshot;

use super::Shared;
use super::tables::Tables;
use crate::error::StoreError;
use crate::store::Committed;
use crate::store::state::{Pending, StoreState};

/// Upper bound on batches per transaction, so one huge group cannot starve fan-out.
pub(super) const MAX_GROUP: usize = 1024;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(super) enum Request {
    /// A batch and where its outcome goes.
    Write(Pending),
    Compact {
        reply: Reply<()>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
    Crash,
}

pub(super) struct Committer {
    shared: Arc<Shared>,
    receiver: mpsc::Receiver<Request>,
    held_back: VecDeque<Request>,
}

impl Committer {
    pub(super) fn new(shared: Arc<Shared>, receiver: mpsc::Receiver<Request>) -> Self {
        Self {
            shared,
            receiver,
            held_back: VecDeque::new(),
        }
    }

    fn next(&mut self) -> Option<Request> {
        self.held_back
            .pop_front()
            .or_else(|| self.receiver.recv().ok())
    }

    pub(super) fn run(mut self) {
        while let Some(request) = self.next() {
            if self.shared.state.is_crashed() {
                return;
            }
            match request {
                Request::Write(first) => {
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match self.receiver.try_recv() {
                            Ok(Request::Write(next)) => group.push(next),
                            Ok(other) => {
                                self.held_back.push_back(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.commit_group(group);
                }
                Request::Compact { reply } => {
                    let _ = reply.send(self.compact());
                }
                Request::Close { reply } => {
                    let _ = reply.send(());
                    return;
                }
                Request::Crash => return,
            }
        }
    }

    fn compact(&self) -> Result<(), StoreError> {
        if self.shared.state.is_failed() {
            return Err(StoreError::FailStopped);
        }
        let mut guard = self
            .shared
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let db = guard.as_mut().ok_or(StoreError::Closed)?;
        db.compact().map_err(StoreError::io)?;
        Ok(())
    }

    fn commit_group(&mut self, mut group: Vec<Pending>) {
        let state = &self.shared.state;
        if state.crash_before_write() {
            return;
        }
        if state.is_failed() {
            StoreState::refuse(group, || StoreError::FailStopped);
            return;
        }
        let started = Instant::now();
        let result = {
            let guard = self
                .shared
                .db
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            match guard.as_ref() {
                None => Err(None),
                Some(db) => {
                    write_group(db, &mut group, &self.receiver, &mut self.held_back).map_err(Some)
                }
            }
        };
        match result {
            Ok(outcomes) => state.answer(group, outcomes, started),
            Err(None) => StoreState::refuse(group, || StoreError::Closed),
            Err(Some(error)) => {
                state.fail_stop(&error);
                let message = error.to_string();
                StoreState::refuse(group, || {
                    StoreError::io(std::io::Error::other(message.clone()))
                });
            }
        }
    }
}

/// One transaction, one fsync, for the whole group. Writes that arrive while the transaction
/// is being built join it too (still no waiting: only what is already queued).
fn write_group(
    db: &redb::Database,
    group: &mut Vec<Pending>,
    receiver: &mpsc::Receiver<Request>,
    held_back: &mut VecDeque<Request>,
) -> Result<Vec<Result<Vec<Committed>, StoreError>>, redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    let mut outcomes = Vec::with_capacity(group.len());
    {
        let mut tables = Tables::new(&txn);
        let mut applied = 0;
        loop {
            while applied < group.len() {
                outcomes.push(tables.apply(&mut group[applied].batch)?);
                applied += 1;
            }
            if group.len() >= MAX_GROUP || !held_back.is_empty() {
                break;
            }
            match receiver.try_recv() {
                Ok(Request::Write(next)) => group.push(next),
                Ok(other) => held_back.push_back(other),
                Err(_) => break,
            }
        }
    }
    txn.commit()?;
    Ok(outcomes)
}
