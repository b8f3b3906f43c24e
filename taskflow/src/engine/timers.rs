//! The wake-up timer of parked runs: one background task for every run of this process that
//! waits for a time, so a sleeping run holds no task and no slot of its own. When a run's time
//! comes (by the flow's clock, looked at least every [`POLL`], so a clock that jumps or a
//! manual clock is noticed) it is admitted again like a resumed run.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc;

use super::Inner;
use super::admission::Ticket;
use crate::clock::Timestamp;
use crate::ids::TaskId;
use crate::metrics::Metrics;
use crate::status::TaskState;

/// The longest the timer sleeps without looking at the clock again.
pub(super) const POLL: Duration = Duration::from_millis(100);

/// The sending side: where parked runs are handed to the timer.
#[derive(Debug)]
pub(super) struct Timers {
    tx: mpsc::UnboundedSender<(Timestamp, Ticket)>,
    rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<(Timestamp, Ticket)>>>,
}

impl Default for Timers {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
        }
    }
}

impl Timers {
    /// Wakes `ticket`'s run at `at` (a later call for the same run replaces the time).
    pub(super) fn wake_at(&self, at: Timestamp, ticket: Ticket) {
        let _ = self.tx.send((at, ticket));
    }
}

/// Starts the timer task of `inner` (once).
pub(super) fn spawn(inner: &Arc<Inner>) {
    let Some(mut rx) = super::lock(&inner.timers.rx).take() else {
        return;
    };
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let task = tokio::spawn(async move {
        let mut due: BTreeSet<(Timestamp, TaskId)> = BTreeSet::new();
        let mut runs: HashMap<TaskId, (Timestamp, Ticket)> = HashMap::new();
        loop {
            let wait = match due.first() {
                Some(_) => POLL,
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                got = rx.recv() => {
                    let Some((at, ticket)) = got else { return };
                    if let Some((old, _)) = runs.insert(ticket.id, (at, ticket.clone())) {
                        due.remove(&(old, ticket.id));
                    }
                    due.insert((at, ticket.id));
                }
                () = tokio::time::sleep(wait) => {}
            }
            let Some(inner) = weak.upgrade() else { return };
            if inner.is_shutting_down() {
                return;
            }
            let now = inner.now();
            while let Some(&(at, id)) = due.first() {
                if at > now {
                    break;
                }
                due.pop_first();
                if let Some((_, ticket)) = runs.remove(&id) {
                    wake(&inner, ticket);
                }
            }
        }
    });
    super::lock(&inner.background).push(task.abort_handle());
}

/// Admits a parked run whose time came, unless it moved on meanwhile (stopped, cancelled,
/// or taken by another process).
fn wake(inner: &Arc<Inner>, ticket: Ticket) {
    let inner = inner.clone();
    tokio::spawn(async move {
        match inner.store.task(ticket.id).await {
            Ok(Some(record)) if record.status == TaskState::Running && record.waiting.is_some() => {
                Metrics::inc(&inner.metrics.runs_woken);
                inner.admit(ticket);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(task_id = %ticket.id, error = %e, "could not wake a parked run")
            }
        }
    });
}
