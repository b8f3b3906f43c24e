//! Submitting a run: validation, the idempotency key, the dedup table and admission.

use std::sync::Arc;

use super::admission::{Refusal, Ticket};
use super::handle::{AnyTask, TaskHandle};
use super::scope::{Scope, StartOptions};
use super::{Inner, ik, lock};
use crate::error::{PayloadKind, StartError, StoreError};
use crate::metrics::Metrics;
use crate::status::TaskState;
use crate::store::{Committed, TaskRecord, Write, WriteBatch};
use crate::task::ExecuteMode;

impl Inner {
    /// Starts `task` with raw JSON `input` as `scope`, or attaches to the run its key names
    /// (the dedup table in the crate docs).
    pub(super) async fn start(
        self: &Arc<Self>,
        scope: &Scope,
        task: &str,
        input: serde_json::Value,
        options: &StartOptions,
    ) -> Result<TaskHandle<AnyTask>, StartError> {
        if self.is_shutting_down() {
            return Err(StartError::ShuttingDown);
        }
        if self.store.is_failed() {
            return Err(StartError::Storage(StoreError::FailStopped));
        }
        let registered = self
            .registry
            .get(task)
            .ok_or_else(|| StartError::UnknownTask(task.to_owned()))?;
        if registered.options.on_behalf_of && scope.user.is_none() {
            return Err(StartError::UserRequired(task.to_owned()));
        }
        self.check_payload(PayloadKind::Input, &input)?;
        let input = (registered.normalize_input)(input).map_err(|e| StartError::InvalidInput {
            path: e.path,
            message: e.message,
        })?;
        let ik = match &options.child {
            Some(child) => child.ik.clone(),
            None => ik::idempotency_key(task, &input, scope.owner.as_ref()),
        };
        let span = tracing::info_span!("submit", task, ik = %ik);
        let _guard = self.key_locks.lock(&ik).await;
        let mode = options
            .execute_mode
            .unwrap_or(registered.options.execute_mode);
        let mut admitted = false;
        let committed = loop {
            let (current, _) = self.store.current_run(&ik).await?;
            let replaces = current.as_ref().map(|run| run.id);
            if let Some(run) = current {
                let attach = match run.status {
                    TaskState::Created | TaskState::Running | TaskState::Completed => true,
                    TaskState::Suspended => {
                        if !run.on_behalf_of || scope.user.is_some() {
                            self.runs.remember_user(run.id, scope);
                            self.resume_run(&run).await?;
                        }
                        true
                    }
                    // The finished run's own mode decides, not this call's: a caller cannot
                    // override a run's at_most_once after the fact.
                    TaskState::Failed | TaskState::Cancelled => {
                        run.execute_mode == ExecuteMode::AtMostOnce
                    }
                };
                if attach {
                    if !run.status.is_terminal() {
                        self.runs.remember_user(run.id, scope);
                    }
                    tracing::debug!(parent: &span, task_id = %run.id, "attached");
                    return Ok(TaskHandle::new(run.id, ik, true));
                }
            }
            let now = self.now();
            if !admitted {
                lock(&self.admission)
                    .check_new(scope.owner.as_ref(), now)
                    .map_err(|refusal| match refusal {
                        Refusal::RateLimited(retry_after) => {
                            StartError::RateLimited { retry_after }
                        }
                        Refusal::QueueFull(limit) => StartError::QueueFull { limit },
                    })?;
                admitted = true;
            }
            let mut record = TaskRecord::new_run(
                task,
                ik.clone(),
                scope.owner.clone(),
                input.clone(),
                options
                    .max_attempts
                    .unwrap_or(registered.options.max_attempts)
                    .get(),
                mode,
                registered.options.on_behalf_of,
                now,
            );
            record.version = registered.options.version.get();
            record.parent = options.child.as_ref().map(|c| c.parent);
            record.disconnect_grace_ms = options
                .disconnect_grace
                .map(|g| u64::try_from(g.as_millis()).unwrap_or(u64::MAX));
            let create = Write::CreateRun {
                record: Box::new(record),
                replaces,
            };
            match self.store.commit(WriteBatch::new(vec![create])).await {
                // Another process made a run current for this key first: decide again,
                // which attaches to it.
                Err(StoreError::KeyTaken) => {}
                other => break other?,
            }
        };
        let Some(Committed::Run { id, .. }) = committed.first() else {
            return Err(StartError::Storage(StoreError::Corrupt(
                "store did not report the created run".into(),
            )));
        };
        let id = *id;
        Metrics::inc(&self.metrics.tasks_started);
        tracing::info!(parent: &span, task_id = %id, "created");
        self.runs.remember_user(id, scope);
        self.admit(Ticket {
            id,
            owner: scope.owner.clone(),
        });
        Ok(TaskHandle::new(id, ik, false))
    }
}
