//! The fold: the thread that moves journaled writes (events, steps, heartbeats) into the
//! database, off the path that acknowledges them, and commits every batch the journal does
//! not take (state changes, new runs, removals, signals) after the writes queued before it.
//!
//! Whatever is queued goes into one transaction, in queue order: journaled groups, and the
//! other groups. Journaled groups alone wait up to [`FOLD_EVERY`] for company and are
//! committed without an fsync (the journal holds them); they are made durable with the other
//! groups, at least every [`DURABLE_EVERY`], when the journal moves to its other half and at
//! close. A durable commit writes every page changed since the last one and flushes the disk
//! the journal syncs to, so they are kept rare: it is what the journal's latency waits behind.
//! Each commit records the last journal record it holds (`journal_applied`), so after a crash
//! the journal is replayed from exactly there.

use std::sync::{Arc, PoisonError, mpsc};
use std::time::{Duration, Instant};

use redb::Durability;
use tokio::sync::oneshot;

use super::Shared;
use super::journal::JournaledGroup;
use super::tables::Tables;
use crate::error::StoreError;
use crate::store::Committed;
use crate::store::state::{Pending, StoreState};

/// How long folded events may stay non-durable in the database (they are durable in the
/// journal meanwhile); a durable commit frees the pages earlier commits replaced.
const DURABLE_EVERY: Duration = Duration::from_secs(30);
/// How long journaled groups wait to be folded together (the tail serves them meanwhile;
/// a transaction costs about the same CPU however few events it holds).
const FOLD_EVERY: Duration = Duration::from_millis(5);
/// Upper bound on jobs per fold transaction.
const MAX_FOLD: usize = 4096;

/// What the fold is asked to do, in the total order of the store's writes.
pub(super) enum FoldJob {
    /// Events made durable in the journal.
    Journaled(JournaledGroup),
    /// A group that is not only events: committed durably after every journaled group before
    /// it, then answered; `done` (when the sequencer waits for it) hears of it then.
    Direct {
        group: Vec<Pending>,
        started: Instant,
        done: Option<mpsc::SyncSender<()>>,
    },
    /// Make everything folded durable; `done` (if someone waits) hears whether it is.
    Durable {
        done: Option<mpsc::SyncSender<bool>>,
    },
    Compact {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Fold everything durably and stop.
    Close { done: mpsc::SyncSender<()> },
}

/// A job that goes into a fold transaction.
enum Item {
    Events(JournaledGroup),
    Direct {
        group: Vec<Pending>,
        started: Instant,
        done: Option<mpsc::SyncSender<()>>,
    },
}

/// A job that ends a fold transaction and is handled after it.
enum After {
    Durable(Option<mpsc::SyncSender<bool>>),
    Compact(oneshot::Sender<Result<(), StoreError>>),
    Close(mpsc::SyncSender<()>),
}

pub(super) struct Fold {
    shared: Arc<Shared>,
    receiver: mpsc::Receiver<FoldJob>,
    last_durable: Instant,
    /// The last journal record the database holds.
    folded: u64,
    /// Unit tests: journaled groups held back (`Shared::hold_fold`).
    #[cfg(test)]
    held: Vec<JournaledGroup>,
}

impl Fold {
    /// A fold whose database holds the journal up to record `folded`.
    pub(super) fn new(shared: Arc<Shared>, receiver: mpsc::Receiver<FoldJob>, folded: u64) -> Self {
        shared.tail.start_at(folded);
        Self {
            shared,
            receiver,
            last_durable: Instant::now(),
            folded,
            #[cfg(test)]
            held: Vec::new(),
        }
    }

    pub(super) fn run(mut self) {
        // However the fold ends (a panic too), reads and appends waiting for it stop waiting:
        // they read what the database has, or find the store closed or failed.
        let _stop = StopTail(self.shared.clone());
        self.fold_all();
    }

    fn fold_all(&mut self) {
        while let Ok(first) = self.receiver.recv() {
            let mut items = Vec::new();
            let mut after = None;
            // A group the sequencer waits for, or a job that ends the transaction, stops the
            // gathering; journaled groups alone wait up to FOLD_EVERY for more.
            let until = Instant::now() + FOLD_EVERY;
            let mut next = Some(first);
            while let Some(job) = next.take() {
                let waited = match job {
                    FoldJob::Journaled(group) => {
                        items.push(Item::Events(group));
                        false
                    }
                    FoldJob::Direct {
                        group,
                        started,
                        done,
                    } => {
                        let waited = done.is_some();
                        items.push(Item::Direct {
                            group,
                            started,
                            done,
                        });
                        waited
                    }
                    FoldJob::Durable { done } => {
                        after = Some(After::Durable(done));
                        true
                    }
                    FoldJob::Compact { reply } => {
                        after = Some(After::Compact(reply));
                        true
                    }
                    FoldJob::Close { done } => {
                        after = Some(After::Close(done));
                        true
                    }
                };
                if waited || items.len() >= MAX_FOLD {
                    break;
                }
                let direct = items.iter().any(|i| matches!(i, Item::Direct { .. }));
                next = if direct {
                    self.receiver.try_recv().ok()
                } else {
                    self.receiver
                        .recv_timeout(until.saturating_duration_since(Instant::now()))
                        .ok()
                };
            }
            if self.shared.state.is_crashed() {
                return;
            }
            #[cfg(test)]
            if self.hold(
                &mut items,
                matches!(after, None | Some(After::Durable(None))),
            ) {
                continue;
            }
            let durable = after.is_some() || self.last_durable.elapsed() >= DURABLE_EVERY;
            let committed = self.commit(items, durable);
            match after {
                None | Some(After::Durable(None)) => {}
                Some(After::Durable(Some(done))) => {
                    let _ = done.send(committed);
                }
                Some(After::Compact(reply)) => {
                    let result = if committed {
                        self.compact()
                    } else {
                        Err(StoreError::FailStopped)
                    };
                    let _ = reply.send(result);
                }
                Some(After::Close(done)) => {
                    let _ = done.send(());
                    return;
                }
            }
        }
    }

    /// Unit tests: keeps journaled groups back while `Shared::hold_fold` is set, unless the
    /// sequencer waits for them (a direct group, a durable commit it waits for, compaction,
    /// close); true when they are kept.
    #[cfg(test)]
    fn hold(&mut self, items: &mut Vec<Item>, nothing_after: bool) -> bool {
        let mut held: Vec<Item> = std::mem::take(&mut self.held)
            .into_iter()
            .map(Item::Events)
            .collect();
        held.append(items);
        *items = held;
        let holding = self
            .shared
            .hold_fold
            .load(std::sync::atomic::Ordering::SeqCst);
        if holding && nothing_after && items.iter().all(|i| matches!(i, Item::Events(_))) {
            self.held = std::mem::take(items)
                .into_iter()
                .filter_map(|i| match i {
                    Item::Events(group) => Some(group),
                    Item::Direct { .. } => None,
                })
                .collect();
            return true;
        }
        false
    }

    /// One transaction for `items` (durable when any of them is a direct group, or
    /// `durable`), then the direct groups' writers are answered. A failure fail-stops the
    /// store (the journal still holds every acknowledged event). True when it committed.
    fn commit(&mut self, items: Vec<Item>, durable: bool) -> bool {
        let shared = self.shared.clone();
        let state = &shared.state;
        let mut events = Vec::new();
        let mut direct = Vec::new();
        let mut started: Option<Instant> = None;
        let mut waiting = Vec::new();
        let mut order = Vec::new();
        for item in items {
            match item {
                Item::Events(group) => {
                    order.push(Some(events.len()));
                    events.push(group);
                }
                Item::Direct {
                    group,
                    started: at,
                    done,
                } => {
                    for pending in group {
                        order.push(None);
                        direct.push(pending);
                    }
                    started = Some(started.map_or(at, |s| s.min(at)));
                    waiting.extend(done);
                }
            }
        }
        let answers_writers = !direct.is_empty();
        if answers_writers && state.crash_before_write() {
            return false;
        }
        let result = if state.is_failed() {
            Err(Refusal::FailStopped)
        } else if events.is_empty() && direct.is_empty() && !durable {
            Ok(Vec::new())
        } else {
            let guard = self
                .shared
                .db
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            match guard.as_ref() {
                None => Err(Refusal::Closed),
                Some(db) => {
                    write_fold(db, &order, &events, &mut direct, durable || answers_writers)
                        .map_err(|error| {
                            state.fail_stop(&error);
                            Refusal::Failed(error.to_string())
                        })
                }
            }
        };
        let committed = result.is_ok();
        match result {
            Ok(outcomes) => {
                let durable = durable || answers_writers;
                if durable {
                    self.last_durable = Instant::now();
                }
                if let Some(last) = events.last() {
                    self.folded = last.jseq;
                }
                self.shared.tail.remove(&events, self.folded, durable);
                if answers_writers {
                    state.answer(direct, outcomes, started.unwrap_or_else(Instant::now));
                }
            }
            Err(refusal) => {
                self.shared.tail.stop();
                StoreState::refuse(direct, || refusal.to_error());
            }
        }
        for done in waiting {
            let _ = done.send(());
        }
        committed
    }

    fn compact(&self) -> Result<(), StoreError> {
        let mut guard = self
            .shared
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let db = guard.as_mut().ok_or(StoreError::Closed)?;
        db.compact().map_err(StoreError::io)?;
        Ok(())
    }
}

/// Wakes everyone waiting for the fold when it goes.
struct StopTail(Arc<Shared>);

impl Drop for StopTail {
    fn drop(&mut self) {
        self.0.tail.stop();
    }
}

/// Why a fold did not commit.
enum Refusal {
    FailStopped,
    Closed,
    /// The commit failed (and fail-stopped the store): its message.
    Failed(String),
}

impl Refusal {
    fn to_error(&self) -> StoreError {
        match self {
            Self::FailStopped => StoreError::FailStopped,
            Self::Closed => StoreError::Closed,
            Self::Failed(message) => StoreError::io(std::io::Error::other(message.clone())),
        }
    }
}

/// Applies, in `order` (`Some(k)`: the journaled group `events[k]`; `None`: the next batch of
/// `direct`), everything in one transaction.
fn write_fold(
    db: &redb::Database,
    order: &[Option<usize>],
    events: &[JournaledGroup],
    direct: &mut [Pending],
    durable: bool,
) -> Result<Vec<Result<Vec<Committed>, StoreError>>, redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    })?;
    let mut outcomes = Vec::with_capacity(direct.len());
    {
        let mut tables = Tables::new(&txn);
        let mut batches = direct.iter_mut();
        for step in order {
            match step {
                Some(k) => tables.fold(std::slice::from_ref(&events[*k]))?,
                None => {
                    let pending = batches.next().expect("one batch per `None` in the order");
                    outcomes.push(tables.apply(&mut pending.batch)?);
                }
            }
        }
    }
    txn.commit()?;
    Ok(outcomes)
}
