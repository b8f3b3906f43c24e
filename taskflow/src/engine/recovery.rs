//! Recovery: runs whose process is gone are taken over and resumed, suspended, or failed as
//! too old. At start-up on redb the file lock proves the previous process is gone, so that is
//! every run left `created` or `running`; on a shared store (PostgreSQL) it is the runs whose
//! lease expired, claimed at start-up and then every heartbeat while slots are free.

use std::sync::{Arc, Weak};

use super::Inner;
use super::admission::Ticket;
use crate::error::{ErrorRecord, StoreError};
use crate::metrics::Metrics;
use crate::store::TaskRecord;
use crate::wait::Waiting;

/// Code of a run that was interrupted longer ago than its `recovery_max_age`.
pub const RECOVERY_MAX_AGE_EXCEEDED: &str = "recovery_max_age_exceeded";

/// Start-up recovery: every interrupted run this process may take over.
pub(super) async fn recover(inner: &Arc<Inner>) -> Result<(), StoreError> {
    let tasks = inner.registry.claimable();
    let in_flight = inner.store.claim_interrupted(usize::MAX, &tasks).await?;
    take_over(inner, in_flight).await?;
    if inner.store.lease().is_some() {
        wake_parked_elsewhere(inner).await?;
    }
    Ok(())
}

/// When a parked run found at start-up is woken: a sleep at its time; a signal wait at once
/// (the signal may have landed while no process could wake it: the run replays to its wait
/// and parks again when it has not).
fn wake_time(waiting: &Waiting, inner: &Inner) -> crate::clock::Timestamp {
    waiting.until().unwrap_or_else(|| inner.now())
}

/// On a shared store, the parked runs of every process are this one's to wake too (their
/// leases lapse only when they are due, by the database's clock): each is put on this
/// process's timer, and the first process to claim it at its time runs it.
async fn wake_parked_elsewhere(inner: &Arc<Inner>) -> Result<(), StoreError> {
    let running = inner
        .store
        .scan(crate::store::Scan {
            states: vec![crate::status::TaskState::Running],
            current_only: true,
            ..crate::store::Scan::default()
        })
        .await?;
    for record in running {
        let Some(until) = record.waiting.as_ref().map(|w| wake_time(w, inner)) else {
            continue;
        };
        if inner
            .registry
            .get(&record.name)
            .is_some_and(|r| r.options.version.get() == record.version)
        {
            inner.timers.wake_at(
                until,
                Ticket {
                    id: record.id,
                    owner: record.owner.clone(),
                },
            );
        }
    }
    Ok(())
}

/// On a shared store: renews this process's leases every heartbeat interval (at least three
/// times per lease), takes runs that waited in a busy process's queue for longer than that,
/// and claims
/// runs whose owner stopped renewing theirs, as many as there are idle slots.
pub(super) fn spawn_claimer(inner: &Arc<Inner>) {
    let Some(lease) = inner.store.lease() else {
        return;
    };
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let every = inner.config.heartbeat_interval.min(lease / 3);
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(inner) = weak.upgrade() else { return };
            if inner.is_shutting_down() || inner.store.is_failed() {
                return;
            }
            if let Err(e) = inner.store.renew_leases().await {
                tracing::warn!(error = %e, "renewing this process's leases failed");
            }
            let idle = super::lock(&inner.admission).idle_slots();
            if idle == 0 {
                continue;
            }
            // Work another process queued but cannot start yet: a free slot here takes it.
            let tasks = inner.registry.claimable();
            match inner.store.claim_queued(idle, &tasks, every).await {
                Ok(runs) => {
                    for run in runs {
                        tracing::debug!(task_id = %run.id, "took a run queued in a busy process");
                        inner.admit(super::admission::Ticket {
                            id: run.id,
                            owner: run.owner.clone(),
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "claiming queued runs failed"),
            }
            let idle = super::lock(&inner.admission).idle_slots();
            if idle == 0 {
                continue;
            }
            let tasks = inner.registry.claimable();
            match inner.store.claim_interrupted(idle, &tasks).await {
                Ok(runs) if runs.is_empty() => {}
                Ok(runs) => {
                    tracing::info!(
                        runs = runs.len(),
                        "claimed runs whose process stopped renewing its lease"
                    );
                    if let Err(e) = take_over(&inner, runs).await {
                        tracing::warn!(error = %e, "taking over claimed runs failed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "claiming interrupted runs failed"),
            }
        }
    });
    super::lock(&inner.background).push(task.abort_handle());
}

/// Resumes, suspends or fails each run of `in_flight` (oldest first, so recovered runs keep
/// their submission order in the queue).
async fn take_over(inner: &Arc<Inner>, in_flight: Vec<TaskRecord>) -> Result<(), StoreError> {
    let span = tracing::info_span!("recovery");
    let now = inner.now();
    for record in in_flight {
        let Some(registered) = inner.registry.get(&record.name) else {
            tracing::warn!(parent: &span, task = %record.name, task_id = %record.id,
                "interrupted run of a task that is no longer registered; leaving it untouched");
            Metrics::inc(&inner.metrics.tasks_unregistered);
            continue;
        };
        if let Some(why) = inner.incompatibility(&record).await? {
            inner.set_aside(&record, why).await?;
            continue;
        }
        // Parked in a wait, not interrupted: it wakes at its time, here.
        if let Some(until) = record.waiting.as_ref().map(|w| wake_time(w, inner)) {
            tracing::debug!(parent: &span, task_id = %record.id, "parked run; waking it at its time");
            inner.timers.wake_at(
                until,
                Ticket {
                    id: record.id,
                    owner: record.owner.clone(),
                },
            );
            continue;
        }
        let options = &registered.options;
        let age = now.since(record.last_alive());
        if options.recovery_max_age.is_zero() || age > options.recovery_max_age {
            tracing::warn!(parent: &span, task_id = %record.id, ?age, "interrupted too long ago; failing it");
            let error = ErrorRecord {
                message: format!(
                    "the run was interrupted {}s ago, longer than its recovery_max_age of {}s",
                    age.as_secs(),
                    options.recovery_max_age.as_secs()
                ),
                code: RECOVERY_MAX_AGE_EXCEEDED.to_owned(),
                public: false,
            };
            inner.fail_run(&record, error).await?;
            continue;
        }
        if !options.auto_recover {
            inner.suspend_run(&record, "auto_recover_disabled").await?;
            continue;
        }
        if record.on_behalf_of {
            // The user's live context died with the previous process.
            inner.suspend_run(&record, "user_context_required").await?;
            continue;
        }
        tracing::info!(parent: &span, task_id = %record.id, task = %record.name, "recovering");
        Metrics::inc(&inner.metrics.tasks_recovered);
        #[cfg(feature = "axum")]
        if let Some(ms) = record.disconnect_grace_ms {
            // Watched as when its clients left: a client must come back within the grace.
            super::lock(&inner.recovered_watched).push(super::port::WatchedRun {
                id: record.id,
                ik: record.ik.clone(),
                owner: record.owner.clone(),
                grace: std::time::Duration::from_millis(ms),
            });
        }
        inner.admit(Ticket {
            id: record.id,
            owner: record.owner.clone(),
        });
    }
    Ok(())
}
