//! In-process fan-out of committed events to live subscribers, and what a shared store hears
//! of other processes (their events, their changes to runs driven here, the state of its
//! notifications).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, watch};

use crate::ids::{IdempotencyKey, TaskId};
use crate::status::StoredEvent;
use crate::store::CommitListener;
use crate::sync::lock;

/// Events buffered per key for slow subscribers; one that falls further behind reads the log.
const CAPACITY: usize = 1024;

/// A committed event as it is fanned out: the event, and slots for its SSE frame (without and
/// with the JavaScript-safe integer rewrite), each rendered once by the first SSE stream that
/// needs it and shared by the others.
#[derive(Debug)]
pub(crate) struct SharedEvent {
    pub(crate) event: StoredEvent,
    #[cfg(feature = "axum")]
    pub(crate) frames: [std::sync::OnceLock<axum::body::Bytes>; 2],
}

impl SharedEvent {
    pub(crate) fn new(event: StoredEvent) -> Arc<Self> {
        Arc::new(Self {
            event,
            #[cfg(feature = "axum")]
            frames: Default::default(),
        })
    }
}

/// How often followers read the log while a shared store's notifications are down.
const POLL_WHILE_DEAF: Duration = Duration::from_millis(500);

/// Whether followers must read the log themselves: `polling` while a shared store cannot
/// hear other processes' commits; `generation` moves on when it can again (read back once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Resync {
    generation: u64,
    polling: bool,
}

/// One broadcast channel per key that has live subscribers.
#[derive(Debug)]
pub(crate) struct Hub {
    /// `None` once the flow shuts down: the senders are dropped, so every follower ends after
    /// what was broadcast to it, and a later follower ends at once.
    channels: Mutex<Option<HashMap<IdempotencyKey, broadcast::Sender<Arc<SharedEvent>>>>>,
    resync: watch::Sender<Resync>,
    /// Whether the store is shared: only then can commits happen that were not broadcast
    /// here, and followers watch `resync` too.
    shared: AtomicBool,
    /// Runs another process changed, for the engine to stop their drivers here.
    changed_elsewhere: mpsc::UnboundedSender<TaskId>,
}

/// What woke a follower.
pub(crate) enum Woken {
    /// An event was broadcast (or the channel lagged or closed).
    Event(Result<Arc<SharedEvent>, RecvError>),
    /// The log may hold events that were not broadcast here: read it.
    ReadLog,
}

/// A follower's side of the hub for one key.
pub(crate) struct Live {
    events: broadcast::Receiver<Arc<SharedEvent>>,
    /// For a shared store only: a follower of a store nobody else writes needs no more than
    /// its channel (and registers with nothing else while it waits).
    resync: Option<watch::Receiver<Resync>>,
}

impl Live {
    /// The next event, or the moment to read the log back.
    pub(crate) async fn next(&mut self) -> Woken {
        let Some(resync) = &mut self.resync else {
            return Woken::Event(self.events.recv().await);
        };
        let polling = resync.borrow_and_update().polling;
        // Boxed, and only while polling: every idle subscriber keeps this future, and a timer
        // inline would cost each of them its size.
        let deaf = async move {
            match polling {
                true => Box::pin(tokio::time::sleep(POLL_WHILE_DEAF)).await,
                false => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            r = self.events.recv() => Woken::Event(r),
            Ok(()) = resync.changed() => Woken::ReadLog,
            () = deaf => Woken::ReadLog,
        }
    }
}

impl Hub {
    /// A hub, and the receiver of the runs other processes change.
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<TaskId>) {
        let (changed_elsewhere, changes) = mpsc::unbounded_channel();
        let hub = Self {
            channels: Mutex::new(Some(HashMap::new())),
            resync: watch::channel(Resync::default()).0,
            shared: AtomicBool::new(false),
            changed_elsewhere,
        };
        (hub, changes)
    }

    /// Tells the hub its store is shared with other processes; called once the store is
    /// open, before anyone follows a key.
    pub(crate) fn set_shared(&self, shared: bool) {
        self.shared.store(shared, Ordering::Relaxed);
    }

    /// Ends every follower (the flow shuts down), now and for followers that come later.
    pub(crate) fn close(&self) {
        lock(&self.channels).take();
    }

    /// A follower of every event committed to `ik` from now on.
    pub(crate) fn receiver(&self, ik: &IdempotencyKey) -> Live {
        let mut channels = lock(&self.channels);
        let events = match channels.as_mut() {
            Some(channels) => {
                if channels.len() > 4 * CAPACITY {
                    channels.retain(|_, tx| tx.receiver_count() > 0);
                }
                channels
                    .entry(ik.clone())
                    .or_insert_with(|| broadcast::channel(CAPACITY).0)
                    .subscribe()
            }
            // Shut down: a channel whose sender is gone, so the follower ends at once.
            None => broadcast::channel(1).0.subscribe(),
        };
        Live {
            events,
            resync: self
                .shared
                .load(Ordering::Relaxed)
                .then(|| self.resync.subscribe()),
        }
    }
}

impl CommitListener for Hub {
    fn committed(&self, ik: &IdempotencyKey, events: &[&StoredEvent]) {
        let mut channels = lock(&self.channels);
        let Some(channels) = channels.as_mut() else {
            return;
        };
        let Some(tx) = channels.get(ik) else {
            return;
        };
        for event in events {
            if tx.send(SharedEvent::new((*event).clone())).is_err() {
                channels.remove(ik);
                return;
            }
        }
    }

    fn wants(&self, ik: &IdempotencyKey) -> bool {
        lock(&self.channels)
            .as_ref()
            .and_then(|channels| channels.get(ik))
            .is_some_and(|tx| tx.receiver_count() > 0)
    }

    fn run_changed(&self, id: TaskId) {
        // The engine may be gone already; then there is nothing to stop.
        let _ = self.changed_elsewhere.send(id);
    }

    fn listening(&self, on: bool) {
        // Only a shared store reports this (it returns a lease too, so the hub knew already).
        self.shared.store(true, Ordering::Relaxed);
        self.resync.send_if_modified(|r| {
            let was = r.polling;
            r.polling = !on;
            if on && was {
                r.generation += 1;
            }
            was != r.polling
        });
    }
}
