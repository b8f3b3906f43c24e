//! The unfolded tail: events that are durable in the journal but not yet in the database,
//! kept in memory so reads see them.
//!
//! Events enter before their writers (and the engine's subscribers) hear of them and leave
//! only after the database commit that holds them is visible to new read transactions. A
//! read therefore takes the tail first and the database second: anything missing from the
//! tail it took was either not durable yet (and so later than all it returns) or already
//! folded (and so in the database it reads after).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use super::journal::JournaledGroup;

/// An unfolded event: its seq and its stored value.
pub(crate) type TailEvent = (u64, Arc<[u8]>);

#[derive(Debug, Default)]
struct Unfolded {
    by_key: HashMap<String, VecDeque<TailEvent>>,
    len: usize,
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

    /// Adds a group made durable in the journal.
    pub(super) fn push(&self, group: &JournaledGroup) {
        let mut unfolded = self.lock();
        for e in &group.events {
            unfolded
                .by_key
                .entry(e.ik.clone())
                .or_default()
                .push_back((e.seq, e.value.clone()));
        }
        unfolded.len += group.events.len();
    }

    /// Removes groups the database now holds (the oldest ones, in order).
    pub(super) fn remove(&self, groups: &[JournaledGroup]) {
        let mut unfolded = self.lock();
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
        drop(unfolded);
        self.shrunk.notify_all();
    }

    /// Waits until at most `max` events are unfolded (the fold's backpressure).
    pub(super) fn wait_below(&self, max: usize) {
        let mut unfolded = self.lock();
        while unfolded.len > max {
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
