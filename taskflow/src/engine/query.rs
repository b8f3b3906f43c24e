//! Reading runs back: ownership checks, status, lists, subscriptions and waiting for the end.

use super::Inner;
use super::scope::{Reach, Scope};
use super::subscription::EventSubscription;
use crate::error::{ControlError, ErrorRecord, WaitError};
use crate::ids::{IdempotencyKey, Seq};
use crate::status::{ListFilter, SubscribeFrom, TaskState, TaskStatus};
use crate::store::{Scan, TaskRecord};

impl Inner {
    /// The key's current run if `scope` owns it, with the key's last seq.
    pub(super) async fn owned_run(
        &self,
        scope: &Scope,
        ik: &IdempotencyKey,
    ) -> Result<(TaskRecord, Seq), ControlError> {
        match self.store.current_run(ik).await? {
            (Some(record), last)
                if scope.reach == Reach::Everyone || record.owner == scope.owner =>
            {
                Ok((record, last))
            }
            _ => Err(ControlError::NotFound),
        }
    }

    pub(super) async fn status(
        &self,
        scope: &Scope,
        ik: &IdempotencyKey,
    ) -> Result<TaskStatus, ControlError> {
        let (record, last) = self.owned_run(scope, ik).await?;
        let mut status = status_of(&record, last);
        status.children = self.children_status(record.id).await?;
        Ok(status)
    }

    pub(super) async fn list(
        &self,
        scope: &Scope,
        filter: ListFilter,
    ) -> Result<Vec<TaskStatus>, ControlError> {
        // One page, read by the store's owner index; a key shows once: its current run (an
        // older failed run of the key is history).
        let scan = Scan {
            owner: Some(scope.owner.clone()),
            states: filter.states,
            task: filter.task,
            updated_before: None,
            limit: Some(filter.limit.unwrap_or(100)),
            before: filter.before,
            current_only: true,
            key_prefix: None,
        };
        let records = self.store.scan(scan).await?;
        Ok(self.statuses(&records).await?)
    }

    /// The status of each listed run, with its key's last seq.
    pub(super) async fn statuses(
        &self,
        records: &[TaskRecord],
    ) -> Result<Vec<TaskStatus>, crate::error::StoreError> {
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            let (_, last) = self.store.current_run(&record.ik).await?;
            out.push(status_of(record, last));
        }
        Ok(out)
    }

    pub(super) async fn subscribe(
        &self,
        scope: &Scope,
        ik: &IdempotencyKey,
        from: SubscribeFrom,
    ) -> Result<EventSubscription, ControlError> {
        // Listen before reading, so nothing committed in between is missed.
        let live = self.hub.receiver(ik);
        let (record, last) = self.owned_run(scope, ik).await?;
        let run_start = Seq(record.first_seq.0.saturating_sub(1));
        let after = match from {
            SubscribeFrom::After(k) if k <= last => k,
            _ => run_start,
        };
        Ok(EventSubscription::new(
            self.store.clone(),
            ik.clone(),
            live,
            after,
            record.first_seq,
        ))
    }

    pub(super) async fn wait_json(
        &self,
        scope: &Scope,
        ik: &IdempotencyKey,
    ) -> Result<serde_json::Value, WaitError> {
        let mut shutdown = self.shutdown.subscribe();
        loop {
            let mut live = self.hub.receiver(ik);
            let (record, _) = self.owned_run(scope, ik).await?;
            match record.status {
                TaskState::Completed => return Ok(record.output.unwrap_or_default()),
                TaskState::Failed => {
                    return Err(WaitError::Failed(record.error.unwrap_or(ErrorRecord {
                        message: "failed".into(),
                        code: "task_error".into(),
                        public: false,
                    })));
                }
                TaskState::Cancelled => {
                    return Err(WaitError::Cancelled {
                        reason: record.suspended_reason.unwrap_or_default(),
                    });
                }
                _ => {}
            }
            if *shutdown.borrow() {
                return Err(WaitError::Closed);
            }
            tokio::select! {
                _ = live.next() => {}
                _ = shutdown.wait_for(|s| *s) => {}
            }
        }
    }
}

pub(super) fn status_of(record: &TaskRecord, last_seq: Seq) -> TaskStatus {
    TaskStatus {
        task_id: record.id,
        idempotency_key: record.ik.clone(),
        task: record.name.clone(),
        owner: record.owner.clone(),
        status: record.status,
        attempt: record.attempt,
        failed_attempts: record.failed_attempts,
        max_attempts: record.max_attempts,
        created_at: record.created_at,
        updated_at: record.updated_at,
        last_seq,
        output: record.output.clone(),
        error: record.error.clone(),
        // The record keeps one reason: the suspension's or the cancellation's.
        suspended_reason: (record.status == TaskState::Suspended)
            .then(|| record.suspended_reason.clone())
            .flatten(),
        cancel_reason: (record.status == TaskState::Cancelled)
            .then(|| record.suspended_reason.clone())
            .flatten(),
        waiting: record
            .waiting
            .clone()
            .filter(|_| record.status == TaskState::Running),
        children: Vec::new(),
    }
}
