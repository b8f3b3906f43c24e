//! The sequencer: with the event journal on, the thread that owns the order of every write.
//!
//! A run of queued batches made only of events, steps and heartbeats (what `ctx.emit`,
//! `ctx.step` and a running attempt queue) is fenced and numbered here, from what this thread
//! knows of each key's last seq and each run's epoch, written to the journal as one record
//! with one fdatasync, and answered; the fold thread moves it into the database afterwards.
//! Any other batch goes to the fold thread, which commits it durably after every journaled
//! group before it; this thread waits for that when it changes what it decides with (so a
//! stop's epoch bump orders after the emits before it and before the emits after it).
//!
//! What this thread knows comes from the database the first time it needs it and is then
//! kept: it is the only writer, so its copy cannot go stale, and every key with events the
//! database does not hold yet is in it. It forgets everything after each direct group, when
//! the fold has caught up and the database is the truth again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::Instant;

use redb::ReadableDatabase;

use super::Shared;
use super::committer::{MAX_GROUP, Request};
use super::fold::FoldJob;
use super::journal::{Journal, JournaledEvent, JournaledGroup, JournaledWrite};
use super::schema::{EPOCHS, KEYS};
use super::tables::encode_event;
use crate::error::StoreError;
use crate::ids::Epoch;
use crate::ids::Seq;
use crate::status::StoredEvent;
use crate::store::state::{Pending, StoreState};
use crate::store::{Committed, TaskPatch, Write, WriteBatch};

/// Journaled events the fold may lag behind before appends wait for it.
const MAX_UNFOLDED: usize = 1 << 16;
/// Keys and runs remembered before the sequencer lets the fold catch up and forgets them.
const MAX_REMEMBERED: usize = 1 << 16;

pub(super) struct Sequencer {
    shared: Arc<Shared>,
    receiver: mpsc::Receiver<Request>,
    held_back: VecDeque<Request>,
    journal: Journal,
    next_jseq: u64,
    fold: Option<mpsc::Sender<FoldJob>>,
    fold_thread: Option<JoinHandle<()>>,
    /// Each key's last seq, for keys written since the last direct group.
    last_seqs: HashMap<String, u64>,
    /// Each run's epoch (`None`: no such run).
    epochs: HashMap<u64, Option<u64>>,
}

impl Sequencer {
    pub(super) fn new(
        shared: Arc<Shared>,
        receiver: mpsc::Receiver<Request>,
        journal: Journal,
        next_jseq: u64,
        fold: mpsc::Sender<FoldJob>,
        fold_thread: JoinHandle<()>,
    ) -> Self {
        Self {
            shared,
            receiver,
            held_back: VecDeque::new(),
            journal,
            next_jseq,
            fold: Some(fold),
            fold_thread: Some(fold_thread),
            last_seqs: HashMap::new(),
            epochs: HashMap::new(),
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
                break;
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
                    self.commit(group);
                }
                Request::Compact { reply } => {
                    if let Err(mpsc::SendError(FoldJob::Compact { reply })) =
                        self.send(FoldJob::Compact { reply })
                    {
                        let _ = reply.send(Err(StoreError::Closed));
                    }
                }
                Request::Close { reply } => {
                    let (done, wait) = mpsc::sync_channel(1);
                    if self.send(FoldJob::Close { done }).is_ok() {
                        let _ = wait.recv();
                    }
                    let _ = reply.send(());
                    break;
                }
                Request::Crash => break,
            }
        }
        // The fold stops once its queue is empty (or at once after a crash).
        self.fold.take();
        if let Some(thread) = self.fold_thread.take() {
            // A panicking fold already failed every waiter; there is nothing left to do.
            let _ = thread.join();
        }
    }

    fn send(&self, job: FoldJob) -> Result<(), mpsc::SendError<FoldJob>> {
        match &self.fold {
            Some(fold) => fold.send(job),
            None => Err(mpsc::SendError(job)),
        }
    }

    /// Journals the head of `group` and commits the rest (from the first batch the journal
    /// does not take) as one direct group, in order. Writes queued behind another write go
    /// with it rather than splitting the group into many small database commits
    /// (500 runs' heartbeats amid their emits would otherwise cost 500 commits).
    fn commit(&mut self, mut group: Vec<Pending>) {
        let head = group
            .iter()
            .position(|p| !is_journaled(&p.batch))
            .unwrap_or(group.len());
        let rest = group.split_off(head);
        if !group.is_empty() {
            self.journal_run(group);
        }
        if !rest.is_empty() {
            self.direct(rest);
        }
    }

    /// Hands `run` to the fold; waits until it is committed and answered when it changes what
    /// this thread decides with (a new or removed run, an epoch, a key's seqs), and otherwise
    /// goes on: the fold commits in queue order, and events journaled meanwhile do not
    /// depend on it (a heartbeat or a step changes no fence and no seq).
    fn direct(&mut self, run: Vec<Pending>) {
        let decides = run.iter().any(|p| changes_decisions(&p.batch));
        let (done, wait) = mpsc::sync_channel(1);
        let job = FoldJob::Direct {
            group: run,
            started: Instant::now(),
            done: decides.then_some(done),
        };
        if let Err(mpsc::SendError(FoldJob::Direct { group, .. })) = self.send(job) {
            StoreState::refuse(group, || StoreError::Closed);
            return;
        }
        if decides {
            let _ = wait.recv();
            self.forget();
        }
    }

    /// Forgets what it knows: the database holds every write now.
    fn forget(&mut self) {
        self.last_seqs.clear();
        self.epochs.clear();
    }

    /// Fences and numbers `run`, journals its events, hands them to the fold and answers.
    fn journal_run(&mut self, mut run: Vec<Pending>) {
        let state = &self.shared.state;
        if state.crash_before_write() {
            return;
        }
        if state.is_failed() {
            StoreState::refuse(run, || StoreError::FailStopped);
            return;
        }
        let started = Instant::now();
        self.shared.tail.wait_below(MAX_UNFOLDED);
        if self.last_seqs.len() > MAX_REMEMBERED || self.epochs.len() > MAX_REMEMBERED {
            if !self.make_durable() {
                StoreState::refuse(run, || StoreError::FailStopped);
                return;
            }
            self.forget();
        }
        let mut events = Vec::new();
        let mut writes = Vec::new();
        let mut outcomes = Vec::with_capacity(run.len());
        for pending in &mut run {
            match self.decide(&mut pending.batch, &mut events, &mut writes) {
                Ok(outcome) => outcomes.push(outcome),
                Err(error) => {
                    self.fail(run, &error);
                    return;
                }
            }
        }
        if events.is_empty() && writes.is_empty() {
            self.shared.state.answer(run, outcomes, started);
            return;
        }
        let group = JournaledGroup {
            jseq: self.next_jseq,
            events,
            writes,
        };
        let record = group.encode();
        if record.len() as u64 > self.journal.largest_record() {
            // Too big for the journal: the fold commits it durably instead, under its jseq.
            self.next_jseq += 1;
            self.shared.tail.push(&group);
            let _ = self.send(FoldJob::Journaled(group));
            if self.make_durable() {
                self.shared.state.answer(run, outcomes, started);
            } else {
                StoreState::refuse(run, || StoreError::FailStopped);
            }
            return;
        }
        if !self.journal.fits(record.len()) {
            // The other half is reused only once the database durably holds every record in
            // it: asked for when appends moved away from it, so this seldom waits.
            if self.shared.tail.durable() < self.journal.other_half_last() && !self.make_durable() {
                StoreState::refuse(run, || StoreError::FailStopped);
                return;
            }
            self.journal.switch_halves();
            let _ = self.send(FoldJob::Durable { done: None });
        }
        if let Err(error) = self.journal.append(group.jseq, &record) {
            let error = std::io::Error::new(
                error.kind(),
                format!("{}: {error}", self.journal.path().display()),
            );
            self.fail(run, &StoreError::io(error));
            return;
        }
        self.next_jseq += 1;
        self.shared.tail.push(&group);
        let _ = self.send(FoldJob::Journaled(group));
        self.shared.state.answer(run, outcomes, started);
    }

    /// Waits until the database durably holds everything journaled; false when it failed.
    fn make_durable(&self) -> bool {
        let (done, wait) = mpsc::sync_channel(1);
        self.send(FoldJob::Durable { done: Some(done) }).is_ok() && wait.recv().unwrap_or(false)
    }

    fn fail(&self, run: Vec<Pending>, error: &StoreError) {
        self.shared.state.fail_stop(error);
        let message = error.to_string();
        StoreState::refuse(run, || {
            StoreError::io(std::io::Error::other(message.clone()))
        });
    }

    /// What the database would decide for `batch` (as `Tables::apply` does): refused when
    /// its fence is stale or it writes to a run that is gone, else each event gets its key's
    /// next seq. Its payloads move into the outcome and `events` / `writes`.
    fn decide(
        &mut self,
        batch: &mut WriteBatch,
        events: &mut Vec<JournaledEvent>,
        writes: &mut Vec<JournaledWrite>,
    ) -> Result<Result<Vec<Committed>, StoreError>, StoreError> {
        if let Some(fence) = batch.fence
            && self.epoch(fence.task.0)? != Some(fence.epoch.0)
        {
            return Ok(Err(StoreError::Fenced));
        }
        for write in &batch.writes {
            if let Write::Update { task, .. } | Write::Step { task, .. } = write
                && batch.fence.is_none_or(|f| f.task != *task)
                && self.epoch(task.0)?.is_none()
            {
                return Ok(Err(StoreError::Fenced));
            }
        }
        let mut out = Vec::with_capacity(batch.writes.len());
        for write in &mut batch.writes {
            match write {
                Write::Event {
                    ik,
                    task,
                    name,
                    data,
                } => {
                    let seq = self.last_seq(ik.as_str())? + 1;
                    let value = encode_event(*task, name, data)?;
                    match self.last_seqs.get_mut(ik.as_str()) {
                        Some(last) => *last = seq,
                        None => {
                            self.last_seqs.insert(ik.as_str().to_owned(), seq);
                        }
                    }
                    events.push(JournaledEvent {
                        ik: ik.as_str().to_owned(),
                        seq,
                        value: value.into(),
                    });
                    out.push(Committed::Event(StoredEvent {
                        seq: Seq(seq),
                        name: name.clone(),
                        data: std::mem::take(data),
                    }));
                }
                Write::Step { task, key, json } => {
                    writes.push(JournaledWrite::Step {
                        task: task.0,
                        key: key.as_str().to_owned(),
                        json: std::mem::take(json),
                    });
                    out.push(Committed::Done);
                }
                Write::Update { task, patch } => {
                    let epoch = self.epoch(task.0)?.expect("checked above: the run exists");
                    writes.push(JournaledWrite::Heartbeat {
                        task: task.0,
                        now: patch.now.as_millis(),
                    });
                    out.push(Committed::Epoch(Epoch(epoch)));
                }
                _ => unreachable!("only what `is_journaled` accepts is journaled"),
            }
        }
        Ok(Ok(out))
    }

    fn epoch(&mut self, task: u64) -> Result<Option<u64>, StoreError> {
        if let Some(epoch) = self.epochs.get(&task) {
            return Ok(*epoch);
        }
        let epoch = self.read(|txn| {
            let epochs = txn.open_table(EPOCHS).map_err(super::storage)?;
            Ok(epochs.get(task).map_err(super::storage)?.map(|v| v.value()))
        })?;
        self.epochs.insert(task, epoch);
        Ok(epoch)
    }

    fn last_seq(&mut self, ik: &str) -> Result<u64, StoreError> {
        if let Some(last) = self.last_seqs.get(ik) {
            return Ok(*last);
        }
        self.read(|txn| {
            let keys = txn.open_table(KEYS).map_err(super::storage)?;
            Ok(keys
                .get(ik)
                .map_err(super::storage)?
                .map_or(0, |v| v.value().1))
        })
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let guard = self
            .shared
            .db
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let db = guard.as_ref().ok_or(StoreError::Closed)?;
        let txn = db.begin_read().map_err(StoreError::io)?;
        f(&txn)
    }
}

/// Whether committing `batch` changes what the sequencer decides events with: a run's
/// existence or epoch, or a key's current run or last seq.
fn changes_decisions(batch: &WriteBatch) -> bool {
    batch.writes.iter().any(|w| match w {
        Write::CreateRun { .. } | Write::DeleteRun { .. } | Write::Event { .. } => true,
        Write::Update { patch, .. } => patch.bump_epoch,
        Write::Step { .. } | Write::Signal { .. } => false,
    })
}

/// Whether the journal takes `batch`: at least one write, each an event, a step or a
/// heartbeat (an update that changes nothing but the heartbeat).
fn is_journaled(batch: &WriteBatch) -> bool {
    !batch.writes.is_empty()
        && batch.writes.iter().all(|w| match w {
            Write::Event { .. } | Write::Step { .. } => true,
            Write::Update { patch, .. } => is_heartbeat(patch),
            _ => false,
        })
}

/// Whether `patch` only records a heartbeat.
fn is_heartbeat(patch: &TaskPatch) -> bool {
    let mut heartbeat = TaskPatch::at(patch.now);
    heartbeat.heartbeat = true;
    *patch == heartbeat
}
