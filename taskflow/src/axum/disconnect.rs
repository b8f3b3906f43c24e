//! Open SSE streams per run, and the disconnect rule: when the last SSE client of a run that a
//! bridge started has been gone for the grace period, the run is stopped (suspended, it may
//! resume) with reason `client_disconnected`. Any re-attach within the grace cancels the
//! timer. In-process subscribers do not count.
//!
//! The table is per flow: it lives in the flow's extensions, reached through the port.
//!
//! On a shared store (PostgreSQL) the rule counts the clients of every process: each process
//! records its open streams per run in the store, a re-attach to a run another process's
//! bridge started follows the grace recorded with the run, and a timer that expires while
//! another live process still streams the run leaves it to that process (which arms its own
//! timer when its last client leaves). So a client a load balancer moves from A to B within
//! the grace keeps its run going.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::engine::port::{Port, WatchedRun, WeakPort};
use crate::engine::{Action, Scope};
use crate::identity::UserId;
use crate::ids::{IdempotencyKey, TaskId};
use crate::sync::lock;

/// Reason a run is stopped with when its clients are gone.
pub const CLIENT_DISCONNECTED: &str = "client_disconnected";

#[derive(Debug, Default)]
struct Watch {
    open: usize,
    /// Set when a bridge request created the run: only such runs are stopped on disconnect.
    disconnect_grace: Option<Duration>,
    timer: Option<AbortHandle>,
}

/// Open streams per run, for one flow.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    runs: Mutex<HashMap<TaskId, Watch>>,
    /// Runs whose count changed, for the task that records counts in a shared store (one
    /// task, so the store sees the counts in the order they changed).
    changed: OnceLock<mpsc::UnboundedSender<TaskId>>,
}

/// Which run a stream follows, for when it closes.
#[derive(Debug, Clone)]
pub(crate) struct StreamTicket {
    pub(crate) id: TaskId,
    pub(crate) ik: IdempotencyKey,
    pub(crate) owner: Option<UserId>,
}

impl Streams {
    /// A stream opened. `disconnect_grace` is `Some` when this request started the run and
    /// wants it stopped after its clients leave.
    pub(crate) fn opened(&self, port: &Port, id: TaskId, disconnect_grace: Option<Duration>) {
        {
            let mut runs = lock(&self.runs);
            let watch = runs.entry(id).or_default();
            watch.open += 1;
            if let Some(timer) = watch.timer.take() {
                timer.abort();
            }
            if disconnect_grace.is_some() {
                watch.disconnect_grace = disconnect_grace;
            }
        }
        self.count_changed(port, id);
    }

    /// Tells the store (a shared one) how many streams of this process follow `id` now.
    fn count_changed(&self, port: &Port, id: TaskId) {
        if !port.is_shared() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let changed = self.changed.get_or_init(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<TaskId>();
            let weak = port.downgrade();
            tokio::spawn(async move {
                while let Some(id) = rx.recv().await {
                    let Some(port) = weak.upgrade() else { return };
                    let open = lock(&port.extension::<Streams>().runs)
                        .get(&id)
                        .map_or(0, |w| w.open);
                    port.record_streams(id, open).await;
                }
            });
            tx
        });
        // The recorder lives as long as the flow's extensions; a send fails only after that.
        let _ = changed.send(id);
    }

    /// A stream closed (its response body was dropped).
    pub(crate) fn closed(&self, port: &Port, ticket: StreamTicket) {
        self.count_changed(port, ticket.id);
        let mut runs = lock(&self.runs);
        let Some(watch) = runs.get_mut(&ticket.id) else {
            return;
        };
        watch.open = watch.open.saturating_sub(1);
        if watch.open > 0 {
            return;
        }
        let Some(grace) = watch.disconnect_grace else {
            runs.remove(&ticket.id);
            return;
        };
        if port.is_shutting_down() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let timer = tokio::spawn(stop_after(port.downgrade(), grace, ticket));
        watch.timer = Some(timer.abort_handle());
    }

    /// Watches a run recovered at start-up that the bridge watched before the restart: it
    /// has no client now, so its timer starts as if the last one had just left.
    fn watch_recovered(&self, port: &Port, run: WatchedRun) {
        let mut runs = lock(&self.runs);
        let watch = runs.entry(run.id).or_default();
        watch.disconnect_grace = Some(run.grace);
        if watch.open > 0 || watch.timer.is_some() {
            return;
        }
        let ticket = StreamTicket {
            id: run.id,
            ik: run.ik,
            owner: run.owner,
        };
        let timer = tokio::spawn(stop_after(port.downgrade(), run.grace, ticket));
        watch.timer = Some(timer.abort_handle());
    }

    /// Open SSE streams across all runs (a gauge).
    pub(crate) fn open_streams(&self) -> usize {
        lock(&self.runs).values().map(|w| w.open).sum()
    }
}

/// Arms the disconnect rule for the runs recovered at start-up that the bridge watched before
/// the restart (the first bridge call after `build()` does it; later calls find none).
pub(crate) fn arm_recovered(port: &Port) {
    if port.is_shutting_down() || tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    let runs = port.take_recovered_watched();
    if runs.is_empty() {
        return;
    }
    let streams = port.extension::<Streams>();
    for run in runs {
        tracing::debug!(task_id = %run.id, "recovered run watched for a returning client");
        streams.watch_recovered(port, run);
    }
}

/// The disconnect timer: after `grace`, stops the run unless a client came back.
async fn stop_after(port: WeakPort, grace: Duration, ticket: StreamTicket) {
    tokio::time::sleep(grace).await;
    let Some(port) = port.upgrade() else { return };
    let streams = port.extension::<Streams>();
    let quiet_here = || {
        lock(&streams.runs)
            .get(&ticket.id)
            .is_some_and(|w| w.open == 0)
    };
    if !quiet_here() {
        return;
    }
    if port.is_shared() && port.streams_elsewhere(ticket.id).await > 0 {
        // A client follows it on another process, which now keeps the rule for it.
        tracing::debug!(task_id = %ticket.id, "a client follows the run on another process");
        let mut runs = lock(&streams.runs);
        if runs.get(&ticket.id).is_some_and(|w| w.open == 0) {
            runs.remove(&ticket.id);
        }
        return;
    }
    {
        let mut runs = lock(&streams.runs);
        match runs.get(&ticket.id) {
            Some(w) if w.open == 0 => {
                runs.remove(&ticket.id);
            }
            _ => return,
        }
    }
    let scope = Scope::owner(ticket.owner.clone());
    match port
        .control(&scope, &ticket.ik, Action::Stop, Some(CLIENT_DISCONNECTED))
        .await
    {
        Ok(_) => tracing::info!(task_id = %ticket.id, "stopped: every client disconnected"),
        // Finished meanwhile, or shutting down: nothing to stop.
        Err(e) => tracing::debug!(task_id = %ticket.id, error = %e, "disconnect stop skipped"),
    }
}
