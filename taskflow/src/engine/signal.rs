//! Signals: a value sent to a run from outside (a person's decision, another system's event),
//! durable once `signal` returns, kept in order per name, and consumed by the handler's n-th
//! `ctx.wait_signal(name)`. A run parked waiting for it is woken at once.

use std::sync::Arc;

use super::Inner;
use super::admission::Ticket;
use super::scope::Scope;
use crate::error::{ControlError, PayloadKind};
use crate::ids::IdempotencyKey;
use crate::names::validate_name;
use crate::status::TaskState;
use crate::store::{Write, WriteBatch};

impl Inner {
    /// Sends signal `name` with `payload` to the current run of `ik`, if `scope` owns it.
    pub(super) async fn signal(
        self: &Arc<Self>,
        scope: &Scope,
        ik: &IdempotencyKey,
        name: &str,
        payload: serde_json::Value,
    ) -> Result<(), ControlError> {
        validate_name(name).map_err(ControlError::InvalidName)?;
        self.check_payload(PayloadKind::Signal, &payload)
            .map_err(ControlError::PayloadTooLarge)?;
        if self.is_shutting_down() {
            return Err(ControlError::ShuttingDown);
        }
        let (record, _) = self.owned_run(scope, ik).await?;
        if record.status.is_terminal() {
            return Err(ControlError::InvalidState {
                state: record.status,
                action: "signal",
            });
        }
        let write = Write::Signal {
            task: record.id,
            name: name.to_owned(),
            payload,
        };
        self.store.commit(WriteBatch::new(vec![write])).await?;
        // Read after the write: a run that parked for this signal before it landed is woken
        // here; one that parks after it finds the signal itself (`AttemptState::park`).
        if let Some(now) = self.store.task(record.id).await?
            && now.status == TaskState::Running
            && now.waiting.as_ref().and_then(|w| w.signal()) == Some(name)
        {
            self.timers.wake_at(
                self.now(),
                Ticket {
                    id: now.id,
                    owner: now.owner.clone(),
                },
            );
        }
        Ok(())
    }
}
