//! Start-up recovery: the redb file lock proves the previous process is gone, so every run it
//! left `created` or `running` is resumed now, suspended, or failed as too old.

use std::sync::Arc;

use super::Inner;
use super::admission::Ticket;
use crate::error::{ErrorRecord, StoreError};
use crate::metrics::Metrics;
use crate::status::TaskState;
use crate::store::Scan;

/// Code of a run that was interrupted longer ago than its `recovery_max_age`.
pub const RECOVERY_MAX_AGE_EXCEEDED: &str = "recovery_max_age_exceeded";

pub(super) async fn recover(inner: &Arc<Inner>) -> Result<(), StoreError> {
    let span = tracing::info_span!("recovery");
    let mut in_flight = inner
        .store
        .scan(Scan {
            states: vec![TaskState::Created, TaskState::Running],
            ..Scan::default()
        })
        .await?;
    // Oldest first, so recovered runs keep their submission order in the queue.
    in_flight.sort_by_key(|r| r.id);
    let now = inner.now();
    for record in in_flight {
        let Some(registered) = inner.registry.get(&record.name) else {
            tracing::warn!(parent: &span, task = %record.name, task_id = %record.id,
                "interrupted run of a task that is no longer registered; leaving it untouched");
            Metrics::inc(&inner.metrics.tasks_unregistered);
            continue;
        };
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
