//! Stop, cancel and resume: the control state machine of one run.

use std::sync::Arc;

use super::Inner;
use super::limits::check_reason;
use super::query::status_of;
use super::scope::Scope;
use crate::error::{ControlError, StoreError};
use crate::ids::IdempotencyKey;
use crate::status::{TaskState, TaskStatus};

/// What stop, cancel and resume do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Suspend the run (it may resume).
    Stop,
    /// End the run for good.
    Cancel,
    /// Run a suspended run again.
    Resume,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Stop => "stop",
            Action::Cancel => "cancel",
            Action::Resume => "resume",
        }
    }
}

impl Inner {
    /// Applies `action` to the current run of `ik` if `scope` owns it. Idempotent where the
    /// state already matches (stop on suspended, cancel on cancelled, resume on live).
    pub(super) async fn control(
        self: &Arc<Self>,
        scope: &Scope,
        ik: &IdempotencyKey,
        action: Action,
        reason: Option<&str>,
    ) -> Result<TaskStatus, ControlError> {
        check_reason(reason)?;
        if self.is_shutting_down() {
            return Err(ControlError::ShuttingDown);
        }
        let _guard = self.key_locks.lock(ik).await;
        loop {
            let (record, last) = self.owned_run(scope, ik).await?;
            let state = record.status;
            let result = match (action, state) {
                (Action::Stop, TaskState::Suspended)
                | (Action::Cancel, TaskState::Cancelled)
                | (Action::Resume, TaskState::Created | TaskState::Running) => {
                    return Ok(status_of(&record, last));
                }
                (_, s) if s.is_terminal() => {
                    return Err(ControlError::InvalidState {
                        state: s,
                        action: action.verb(),
                    });
                }
                (Action::Stop, _) => self.suspend_run(&record, reason.unwrap_or("stopped")).await,
                (Action::Cancel, _) => {
                    self.cancel_run(&record, reason.unwrap_or("cancelled"))
                        .await
                }
                (Action::Resume, _) => {
                    if record.on_behalf_of && scope.user.is_none() {
                        return Err(ControlError::InvalidState {
                            state,
                            action: "resume without a user context",
                        });
                    }
                    self.runs.remember_user(record.id, scope);
                    self.resume_run(&record).await
                }
            };
            match result {
                // The run moved on between our read and our write: decide again.
                Err(StoreError::Fenced) => continue,
                Err(e) => return Err(e.into()),
                Ok(()) => {}
            }
            if matches!(action, Action::Stop | Action::Cancel) {
                self.signal_stop(record.id);
            }
            if action == Action::Cancel {
                self.cancel_children(&record).await;
            }
            let (record, last) = self.owned_run(scope, ik).await?;
            return Ok(status_of(&record, last));
        }
    }
}
