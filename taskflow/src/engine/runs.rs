//! The runs live in this process: their drivers' controls, their users' live contexts, and
//! the admission of queued runs into free slots.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::admission::Ticket;
use super::scope::Scope;
use super::{Inner, driver, lock};
use crate::identity::UserContext;
use crate::ids::TaskId;

/// Control of a run that has a driver in this process.
#[derive(Debug)]
struct RunControl {
    generation: u64,
    stop: watch::Sender<bool>,
    driver: Option<AbortHandle>,
    handler: Option<AbortHandle>,
}

/// Which driver generation a run's control belongs to (a run may be driven again after a
/// stop and a resume; only the current driver may change its entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Generation(u64);

#[derive(Debug)]
pub(super) struct Runs {
    controls: Mutex<HashMap<TaskId, RunControl>>,
    users: Mutex<HashMap<TaskId, UserContext>>,
    active: watch::Sender<usize>,
    generations: AtomicU64,
}

impl Default for Runs {
    fn default() -> Self {
        Self {
            controls: Mutex::default(),
            users: Mutex::default(),
            active: watch::channel(0).0,
            generations: AtomicU64::new(1),
        }
    }
}

impl Runs {
    /// Registers a new driver for `id`; returns its generation and its stop signal.
    pub(super) fn register(&self, id: TaskId) -> (Generation, watch::Receiver<bool>) {
        let generation = Generation(self.generations.fetch_add(1, Ordering::Relaxed));
        let (stop, stop_rx) = watch::channel(false);
        self.active.send_modify(|n| *n += 1);
        lock(&self.controls).insert(
            id,
            RunControl {
                generation: generation.0,
                stop,
                driver: None,
                handler: None,
            },
        );
        (generation, stop_rx)
    }

    /// Records the driver task, so shutdown can drop it.
    pub(super) fn set_driver(&self, id: TaskId, generation: Generation, handle: AbortHandle) {
        if let Some(c) = lock(&self.controls).get_mut(&id)
            && c.generation == generation.0
        {
            c.driver = Some(handle);
        }
    }

    /// Records the handler task of the current attempt, so a stop can drop it.
    pub(super) fn set_handler(&self, id: TaskId, generation: Generation, handle: AbortHandle) {
        if let Some(c) = lock(&self.controls).get_mut(&id)
            && c.generation == generation.0
        {
            c.handler = Some(handle);
        }
    }

    /// The driver of `generation` exited.
    pub(super) fn unregister(&self, id: TaskId, generation: Generation) {
        let mut controls = lock(&self.controls);
        if controls
            .get(&id)
            .is_some_and(|c| c.generation == generation.0)
        {
            controls.remove(&id);
        }
        drop(controls);
        self.active.send_modify(|n| *n = n.saturating_sub(1));
    }

    /// Fires the stop signal of `id`'s driver, if it has one here.
    pub(super) fn signal_stop(&self, id: TaskId) {
        if let Some(control) = lock(&self.controls).get(&id) {
            control.stop.send_replace(true);
        }
    }

    /// Fires the stop signal of `id`'s driver if it is still `generation` (a fenced-off
    /// attempt must not stop the driver of a later resume).
    pub(super) fn signal_stop_of(&self, id: TaskId, generation: Generation) {
        if let Some(control) = lock(&self.controls).get(&id)
            && control.generation == generation.0
        {
            control.stop.send_replace(true);
        }
    }

    /// Fires every driver's stop signal.
    pub(super) fn signal_stop_all(&self) {
        for control in lock(&self.controls).values() {
            control.stop.send_replace(true);
        }
    }

    /// Aborts every handler and driver; with `forget`, also drops their entries (a crash).
    pub(super) fn abort_all(&self, forget: bool) {
        let mut controls = lock(&self.controls);
        for control in controls.values() {
            for handle in control.handler.iter().chain(control.driver.iter()) {
                handle.abort();
            }
        }
        if forget {
            controls.clear();
        }
    }

    /// Resolves once no driver runs.
    pub(super) async fn all_finished(&self) {
        let mut active = self.active.subscribe();
        // An Err means the sender is gone, which cannot happen while `self` lives.
        let _ = active.wait_for(|n| *n == 0).await;
    }

    /// Keeps the live user context of `scope` for run `id` (it reaches the handler).
    pub(super) fn remember_user(&self, id: TaskId, scope: &Scope) {
        if let Some(user) = &scope.user {
            lock(&self.users).insert(id, user.clone());
        }
    }

    pub(super) fn live_user(&self, id: TaskId) -> Option<UserContext> {
        lock(&self.users).get(&id).cloned()
    }

    /// Drops the live user context once the run is terminal.
    pub(super) fn forget_user(&self, id: TaskId) {
        lock(&self.users).remove(&id);
    }
}

impl Inner {
    /// Runs the ticket now if a slot is free, else queues it.
    pub(super) fn admit(self: &Arc<Self>, ticket: Ticket) {
        if self.is_shutting_down() {
            return;
        }
        let run_now = lock(&self.admission).admit(ticket.clone());
        if run_now {
            driver::spawn(self.clone(), ticket);
        }
    }

    /// Called by a driver when it exits: frees its slot and starts what the slot admits.
    pub(super) fn driver_finished(self: &Arc<Self>, ticket: &Ticket, generation: Generation) {
        self.runs.unregister(ticket.id, generation);
        let admitted = lock(&self.admission).release(ticket.owner.as_ref());
        if self.is_shutting_down() {
            return;
        }
        for next in admitted {
            driver::spawn(self.clone(), next);
        }
    }

    /// Removes a queued run from admission and fires its driver's stop signal.
    pub(super) fn signal_stop(&self, id: TaskId) {
        lock(&self.admission).forget(id);
        self.runs.signal_stop(id);
    }
}
