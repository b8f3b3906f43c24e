//! Retention: removes old finished and suspended runs, compacting after large removals.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use super::{Inner, lock};
use crate::clock::Timestamp;
use crate::error::StoreError;
use crate::status::TaskState;
use crate::store::{Committed, Scan, Write, WriteBatch};

/// Runs deleted per transaction.
const DELETE_CHUNK: usize = 256;

pub(super) async fn collect(inner: &Inner) -> Result<usize, StoreError> {
    let now = inner.now();
    let before = |keep: std::time::Duration| {
        Timestamp::from_millis(
            now.as_millis()
                .saturating_sub(u64::try_from(keep.as_millis()).unwrap_or(u64::MAX)),
        )
    };
    let mut victims = inner
        .store
        .scan(Scan {
            states: vec![
                TaskState::Completed,
                TaskState::Failed,
                TaskState::Cancelled,
            ],
            updated_before: Some(before(inner.config.retain_terminal)),
            ..Scan::default()
        })
        .await?;
    victims.extend(
        inner
            .store
            .scan(Scan {
                states: vec![TaskState::Suspended],
                updated_before: Some(before(inner.config.retain_suspended)),
                ..Scan::default()
            })
            .await?,
    );
    let mut removed = victims.len();
    for chunk in victims.chunks(DELETE_CHUNK) {
        let writes = chunk
            .iter()
            .map(|r| Write::DeleteRun {
                task: r.id,
                // Only if nothing happened to it since the scan: a suspended run resumed in
                // between is running now and must stay.
                if_unchanged: Some((r.status, r.updated_at)),
            })
            .collect();
        let committed = inner.store.commit(WriteBatch::new(writes)).await?;
        removed -= committed
            .iter()
            .filter(|c| matches!(c, Committed::Kept))
            .count();
    }
    if removed > 0 {
        inner
            .metrics
            .runs_collected
            .fetch_add(removed as u64, Ordering::Relaxed);
        tracing::info!(removed, "retention removed old runs");
    }
    if removed >= inner.config.compact_after {
        inner.store.compact().await?;
    }
    Ok(removed)
}

/// Runs [`collect`] every `gc_interval` until shutdown.
pub(super) fn spawn_collector(inner: &Arc<Inner>) {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let every = inner.config.gc_interval;
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(inner) = weak.upgrade() else { return };
            if let Err(e) = collect(&inner).await {
                tracing::warn!(error = %e, "retention failed");
            }
        }
    });
    lock(&inner.background).push(task.abort_handle());
}
