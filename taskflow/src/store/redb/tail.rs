//! The unfolded tail: events that are durable in the journal but not yet in the database,
//! kept in memory so reads see them.
//!
//! Events enter before their writers (and the engine's subscribers) hear of them and leave
//! only after the database commit that holds them is visible to new read transactions. A
//! read therefore takes the tail first and the database second: anything missing from the
//! tail it took was either not durable yet (and so later than all it returns) or already
//! folded (and so in the database it reads after).
//!
//! Steps and heartbeats are not kept here: a read of runs or steps waits instead until the
//! fold has passed the last record holding one ([`Tail::wait_folded`]); reads of events never
//! wait.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use super::journal::JournaledGroup;

/// An unfolded event: its seq and its stored value.
pub(crate) type TailEvent = (u64, Arc<[u8]>);

#[derive(Debug, Default)]
struct Unfolded {
    by_key: HashMap<String, VecDeque<TailEvent>>,
    len: usize,
    /// The last journaled record holding a step or a heartbeat.
    writes_journaled: u64,
    /// The last record the database holds (visible to new reads).
    folded: u64,
    /// The last record the database holds durably.
    durable: u64,
    /// The fold is gone (closed, crashed or failed): nobody waits for it any more.
    stopped: bool,
}

/// The journal's events the database does not hold yet, by key.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    unfolded: Mutex<Unfolded>,
    shrunk: Condvar,
}

impl Tail {
    fn lock(&self) -> std::sync::MutexGuard<'_, Unfolded> {
        self.unfolded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a group made durable in the journal (before its writers hear of it).
    pub(super) fn push(&self, group: &JournaledGroup) {
        let mut unfolded = self.lock();
        for e in &group.events {
            unfolded
                .by_key
                .entry(e.ik.clone())
                .or_default()
                .push_back((e.seq, e.value.clone()));
        }
        // Steps and heartbeats count too: the fold's backlog is what the bound is about.
        unfolded.len += group.events.len() + group.writes.len();
        if !group.writes.is_empty() {
            unfolded.writes_journaled = group.jseq;
        }
    }

    /// The record a read of runs or steps must see folded (taken before the read starts).
    pub(crate) fn writes_journaled(&self) -> u64 {
        self.lock().writes_journaled
    }

    /// Waits until the database holds record `jseq` (at once when the fold is gone).
    pub(crate) fn wait_folded(&self, jseq: u64) {
        let mut unfolded = self.lock();
        while unfolded.folded < jseq && !unfolded.stopped {
            unfolded = self
                .shrunk
                .wait(unfolded)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The last record the database holds durably.
    pub(super) fn durable(&self) -> u64 {
        self.lock().durable
    }

    /// Starts from the records the database holds at open.
    pub(super) fn start_at(&self, jseq: u64) {
        let mut unfolded = self.lock();
        unfolded.folded = jseq;
        unfolded.durable = jseq;
        unfolded.writes_journaled = jseq;
    }

    /// The fold is gone: wakes everyone waiting for it.
    pub(super) fn stop(&self) {
        self.lock().stopped = true;
        self.shrunk.notify_all();
    }

    /// Removes groups the database now holds (the oldest ones, in order), up to record
    /// `folded` (durably when `durable`).
    pub(super) fn remove(&self, groups: &[JournaledGroup], folded: u64, durable: bool) {
        let mut unfolded = self.lock();
        unfolded.folded = unfolded.folded.max(folded);
        if durable {
            unfolded.durable = unfolded.folded;
        }
        for e in groups.iter().flat_map(|g| &g.events) {
            if let Some(queue) = unfolded.by_key.get_mut(&e.ik) {
                debug_assert_eq!(queue.front().map(|f| f.0), Some(e.seq));
                queue.pop_front();
                if queue.is_empty() {
                    unfolded.by_key.remove(&e.ik);
                }
            }
            unfolded.len -= 1;
        }
        unfolded.len -= groups.iter().map(|g| g.writes.len()).sum::<usize>();
        drop(unfolded);
        self.shrunk.notify_all();
    }

    /// Waits until at most `max` writes are unfolded (the fold's backpressure; at once when
    /// the fold is gone).
    pub(super) fn wait_below(&self, max: usize) {
        let mut unfolded = self.lock();
        while unfolded.len > max && !unfolded.stopped {
            unfolded = self
                .shrunk
                .wait(unfolded)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Up to `limit` unfolded events of `ik` after seq `after`: (seq, stored value).
    pub(crate) fn after(&self, ik: &str, after: u64, limit: usize) -> Vec<TailEvent> {
        self.lock().by_key.get(ik).map_or_else(Vec::new, |queue| {
            queue
                .iter()
                .filter(|(seq, _)| *seq > after)
                .take(limit)
                .cloned()
                .collect()
        })
    }

    /// The last unfolded seq of `ik`.
    pub(crate) fn last_seq(&self, ik: &str) -> Option<u64> {
        self.lock()
            .by_key
            .get(ik)
            .and_then(|queue| queue.back().map(|(seq, _)| *seq))
    }
}
