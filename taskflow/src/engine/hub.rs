//! In-process fan-out of committed events to live subscribers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::ids::IdempotencyKey;
use crate::status::StoredEvent;
use crate::store::CommitListener;
use crate::sync::lock;

/// Events buffered per key for slow subscribers; one that falls further behind reads the log.
const CAPACITY: usize = 1024;

/// A committed event as it is fanned out: the event, and a slot for its SSE frame, rendered
/// once by the first SSE writer that needs the default rendering and shared by the others.
#[derive(Debug)]
pub(crate) struct SharedEvent {
    pub(crate) event: StoredEvent,
    #[cfg(feature = "axum")]
    pub(crate) frame: std::sync::OnceLock<String>,
}

impl SharedEvent {
    pub(crate) fn new(event: StoredEvent) -> Arc<Self> {
        Arc::new(Self {
            event,
            #[cfg(feature = "axum")]
            frame: std::sync::OnceLock::new(),
        })
    }
}

/// One broadcast channel per key that has live subscribers.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    channels: Mutex<HashMap<IdempotencyKey, broadcast::Sender<Arc<SharedEvent>>>>,
}

impl Hub {
    /// A receiver of every event committed to `ik` from now on.
    pub(crate) fn receiver(&self, ik: &IdempotencyKey) -> broadcast::Receiver<Arc<SharedEvent>> {
        let mut channels = lock(&self.channels);
        if channels.len() > 4 * CAPACITY {
            channels.retain(|_, tx| tx.receiver_count() > 0);
        }
        channels
            .entry(ik.clone())
            .or_insert_with(|| broadcast::channel(CAPACITY).0)
            .subscribe()
    }
}

impl CommitListener for Hub {
    fn committed(&self, ik: &IdempotencyKey, events: &[StoredEvent]) {
        let mut channels = lock(&self.channels);
        let Some(tx) = channels.get(ik) else {
            return;
        };
        for event in events {
            if tx.send(SharedEvent::new(event.clone())).is_err() {
                channels.remove(ik);
                return;
            }
        }
    }
}
