//! State transitions of a run: each commits the new state with its lifecycle event in one
//! batch fenced by the run's epoch, and keeps the metrics and the live user table with it.

use std::sync::Arc;

use super::Inner;
use super::admission::Ticket;
use crate::error::{ErrorRecord, StoreError};
use crate::ids::{Epoch, IdempotencyKey, TaskId};
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::status::TaskState;
use crate::store::{Committed, Fence, TaskPatch, TaskRecord, Write, WriteBatch};

impl Inner {
    /// Commits `patch` (and `event`, if any) to run `id` unless its epoch moved past `epoch`.
    pub(super) async fn commit_fenced(
        &self,
        id: TaskId,
        ik: &IdempotencyKey,
        epoch: Epoch,
        patch: TaskPatch,
        event: Option<Lifecycle>,
    ) -> Result<Vec<Committed>, StoreError> {
        self.commit_fenced_with(id, ik, epoch, patch, event, Vec::new())
            .await
    }

    /// [`commit_fenced`](Self::commit_fenced) with more writes in the same batch (the failed
    /// attempt's record).
    pub(super) async fn commit_fenced_with(
        &self,
        id: TaskId,
        ik: &IdempotencyKey,
        epoch: Epoch,
        patch: TaskPatch,
        event: Option<Lifecycle>,
        extra: Vec<Write>,
    ) -> Result<Vec<Committed>, StoreError> {
        let mut writes = vec![Write::Update { task: id, patch }];
        writes.extend(extra);
        if let Some(event) = event {
            writes.push(Write::Event {
                ik: ik.clone(),
                task: id,
                name: event.name().to_owned(),
                data: event.data(),
            });
        }
        let fence = Fence { task: id, epoch };
        self.store.commit(WriteBatch::fenced(fence, writes)).await
    }

    /// Commits a state change with its lifecycle event, fenced by the record's epoch.
    async fn transition(
        &self,
        record: &TaskRecord,
        patch: TaskPatch,
        event: Option<Lifecycle>,
    ) -> Result<(), StoreError> {
        self.commit_fenced(record.id, &record.ik, record.epoch, patch, event)
            .await
            .map(drop)
    }

    /// Fails a run that is not running in this process (recovery).
    pub(super) async fn fail_run(
        self: &Arc<Self>,
        record: &TaskRecord,
        error: ErrorRecord,
    ) -> Result<(), StoreError> {
        let mut patch = TaskPatch::at(self.now());
        patch.status = Some(TaskState::Failed);
        patch.bump_epoch = true;
        let event = Lifecycle::failed(&error);
        patch.error = Some(error);
        self.transition(record, patch, Some(event)).await?;
        Metrics::inc(&self.metrics.tasks_failed);
        self.runs.forget_user(record.id);
        self.wake_parent(record);
        Ok(())
    }

    /// Suspends a run, committing the `suspended` event, and fences its attempt.
    pub(super) async fn suspend_run(
        &self,
        record: &TaskRecord,
        reason: &str,
    ) -> Result<(), StoreError> {
        let event = Lifecycle::Suspended {
            reason: reason.to_owned(),
        };
        self.stop_attempt(record, TaskState::Suspended, reason, event)
            .await
    }

    /// Cancels a run for good, committing the `cancelled` event, and fences its attempt.
    pub(super) async fn cancel_run(
        self: &Arc<Self>,
        record: &TaskRecord,
        reason: &str,
    ) -> Result<(), StoreError> {
        let event = Lifecycle::Cancelled {
            reason: reason.to_owned(),
        };
        self.stop_attempt(record, TaskState::Cancelled, reason, event)
            .await?;
        Metrics::inc(&self.metrics.tasks_cancelled);
        self.runs.forget_user(record.id);
        self.wake_parent(record);
        Ok(())
    }

    /// Moves a run to `state` with `reason`, drops a pending retry and bumps the epoch, so the
    /// attempt in flight can write nothing more.
    async fn stop_attempt(
        &self,
        record: &TaskRecord,
        state: TaskState,
        reason: &str,
        event: Lifecycle,
    ) -> Result<(), StoreError> {
        let mut patch = TaskPatch::at(self.now());
        patch.status = Some(state);
        patch.suspended_reason = Some(Some(reason.to_owned()));
        patch.next_attempt_at = Some(None);
        patch.waiting = Some(None);
        patch.bump_epoch = true;
        self.transition(record, patch, Some(event)).await
    }

    /// Puts a suspended run back in `created` and admits it.
    pub(super) async fn resume_run(
        self: &Arc<Self>,
        record: &TaskRecord,
    ) -> Result<(), StoreError> {
        let mut patch = TaskPatch::at(self.now());
        patch.status = Some(TaskState::Created);
        patch.suspended_reason = Some(None);
        self.transition(record, patch, None).await?;
        self.admit(Ticket {
            id: record.id,
            owner: record.owner.clone(),
        });
        Ok(())
    }
}
