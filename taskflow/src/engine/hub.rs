//! In-process fan-out of committed events to live subscribers, and what a shared store hears
//! of other processes (their events, their changes to runs driven here, the state of its
//! notifications).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// A commit's events for one key's followers, with the key's channel.
type Delivery = (broadcast::Sender<Arc<SharedEvent>>, Vec<Arc<SharedEvent>>);

/// Up to this many followers of a key are woken by the thread that reports the commit;
/// a key with more goes through [`fan_out`]. One follower gains nothing from the extra hop
/// (it cost the 500-stream bench, one follower per key, ~100 µs at p50).
const DIRECT_WAKES: usize = 4;

/// The queue of [`fan_out`] and how many deliveries it holds that are not broadcast yet.
#[derive(Debug)]
struct FanOut {
    queue: mpsc::UnboundedSender<Delivery>,
    queued: Arc<AtomicUsize>,
}

/// One broadcast channel per key that has live subscribers.
#[derive(Debug)]
pub(crate) struct Hub {
    /// `None` once the flow shuts down: the senders are dropped, so every follower ends after
    /// what was broadcast to it (deliveries still queued included), and a later follower ends
    /// at once.
    channels: Mutex<Option<HashMap<IdempotencyKey, broadcast::Sender<Arc<SharedEvent>>>>>,
    /// `None` outside a runtime, where every commit is broadcast where it is reported.
    fan_out: Option<FanOut>,
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
    /// A hub, and the receiver of the runs other processes change. Inside a tokio runtime
    /// it spawns its [`fan_out`] task, which ends with the hub.
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<TaskId>) {
        let (changed_elsewhere, changes) = mpsc::unbounded_channel();
        let fan_out = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let (queue, deliveries) = mpsc::unbounded_channel();
            let queued = Arc::new(AtomicUsize::new(0));
            runtime.spawn(fan_out(deliveries, queued.clone()));
            FanOut { queue, queued }
        });
        let hub = Self {
            channels: Mutex::new(Some(HashMap::new())),
            fan_out,
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
        // Under the lock, so commits reported on two threads (a shared store's committer and
        // listener) are broadcast, or queued, in the order they took it.
        let mut channels = lock(&self.channels);
        let Some(channels) = channels.as_mut() else {
            return;
        };
        let Some(tx) = channels.get(ik) else {
            return;
        };
        let followers = tx.receiver_count();
        if followers == 0 {
            channels.remove(ik);
            return;
        }
        let events = events.iter().map(|e| SharedEvent::new((*e).clone()));
        let delivery = (tx.clone(), events.collect());
        let delivery = match &self.fan_out {
            // Woken from here only when nothing is still queued, so no event overtakes one
            // committed before it.
            Some(fan_out)
                if followers > DIRECT_WAKES || fan_out.queued.load(Ordering::Acquire) > 0 =>
            {
                fan_out.queued.fetch_add(1, Ordering::AcqRel);
                match fan_out.queue.send(delivery) {
                    Ok(()) => return,
                    // The runtime is gone, and the task with it.
                    Err(mpsc::error::SendError(delivery)) => {
                        fan_out.queued.fetch_sub(1, Ordering::AcqRel);
                        delivery
                    }
                }
            }
            _ => delivery,
        };
        broadcast_all(delivery);
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

/// Broadcasts the queued commits of keys with many followers, in order. The store reports
/// commits on its own thread (the redb committer) or task; broadcasting here, on a runtime
/// worker, puts the followers' wake-ups on that worker's run queue instead of sending each
/// of them across threads into the runtime's shared queue (BENCHMARKS.md, issue 9, fourth
/// session: 1,000 followers of one key).
async fn fan_out(mut deliveries: mpsc::UnboundedReceiver<Delivery>, queued: Arc<AtomicUsize>) {
    while let Some(delivery) = deliveries.recv().await {
        broadcast_all(delivery);
        queued.fetch_sub(1, Ordering::AcqRel);
    }
}

fn broadcast_all((tx, events): Delivery) {
    for event in events {
        // No follower left: the next commit removes the channel.
        if tx.send(event).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Seq;

    fn event(seq: u64) -> StoredEvent {
        StoredEvent {
            seq: Seq(seq),
            name: "tick".into(),
            data: serde_json::Value::Null,
        }
    }

    fn try_seq(live: &mut Live) -> Option<u64> {
        live.events.try_recv().ok().map(|e| e.event.seq.0)
    }

    /// A key whose followers shrink below `DIRECT_WAKES` while a commit of it is still queued
    /// waits behind it; once the queue is empty, commits are broadcast in place again. (The
    /// test's runtime has one thread: the fan-out task runs only when the test awaits.)
    #[tokio::test]
    async fn a_commit_never_overtakes_one_still_queued() {
        let (hub, _changes) = Hub::new();
        let queued = || {
            hub.fan_out
                .as_ref()
                .map(|f| f.queued.load(Ordering::Acquire))
        };
        let ik = IdempotencyKey::from_trusted("k".into());
        let mut first = hub.receiver(&ik);
        let crowd: Vec<Live> = (0..DIRECT_WAKES).map(|_| hub.receiver(&ik)).collect();
        hub.committed(&ik, &[&event(1)]);
        assert_eq!((try_seq(&mut first), queued()), (None, Some(1)), "queued");
        drop(crowd);
        hub.committed(&ik, &[&event(2)]);
        assert_eq!(
            (try_seq(&mut first), queued()),
            (None, Some(2)),
            "behind the first"
        );
        let mut got = Vec::new();
        for _ in 0..2 {
            match tokio::time::timeout(Duration::from_secs(10), first.next()).await {
                Ok(Woken::Event(Ok(shared))) => got.push(shared.event.seq.0),
                _ => panic!("after {got:?}: no event"),
            }
        }
        assert_eq!((got, queued()), (vec![1, 2], Some(0)));
        hub.committed(&ik, &[&event(3)]);
        assert_eq!(try_seq(&mut first), Some(3), "broadcast in place");
    }

    /// Outside a runtime there is no task: commits are broadcast where they are reported.
    #[test]
    fn without_a_runtime_commits_are_broadcast_in_place() {
        let (hub, _changes) = Hub::new();
        assert!(hub.fan_out.is_none());
        let ik = IdempotencyKey::from_trusted("k".into());
        let mut followers: Vec<Live> = (0..=DIRECT_WAKES).map(|_| hub.receiver(&ik)).collect();
        hub.committed(&ik, &[&event(1), &event(2)]);
        for live in &mut followers {
            assert_eq!(live.events.try_recv().map(|e| e.event.seq.0), Ok(1));
            assert_eq!(live.events.try_recv().map(|e| e.event.seq.0), Ok(2));
        }
    }
}
