//! Signals: a value sent to a run from outside (a person's decision, another system's event),
//! durable once `signal` returns, kept in order per name, and consumed by the handler's n-th
//! `ctx.wait_signal(name)`. A run parked waiting for it is woken at once. A task that
//! declares a `#[signals]` enum has each signal checked against it here and stored in one
//! arrival-ordered channel for `ctx.next_signal`. A signal sent with a sender's key
//! (`signal_once`) is stored at most once per key and run, so a client may retry it.

use std::sync::Arc;

use super::Inner;
use super::admission::Ticket;
use super::scope::Scope;
use crate::error::{ControlError, PayloadKind};
use crate::ids::IdempotencyKey;
use crate::names::validate_signal_name;
use crate::status::TaskState;
use crate::store::{Write, WriteBatch};

impl Inner {
    /// Sends signal `name` with `payload` to the current run of `ik`, if `scope` owns it;
    /// with `once`, only if no signal with that sender's key reached the run before.
    pub(super) async fn signal(
        self: &Arc<Self>,
        scope: &Scope,
        ik: &IdempotencyKey,
        name: &str,
        payload: serde_json::Value,
        once: Option<&str>,
    ) -> Result<(), ControlError> {
        validate_signal_name(name).map_err(ControlError::InvalidName)?;
        if let Some(key) = once {
            check_signal_key(key)?;
        }
        self.check_payload(PayloadKind::Signal, &payload)
            .map_err(ControlError::PayloadTooLarge)?;
        if self.is_shutting_down() {
            return Err(ControlError::ShuttingDown);
        }
        let (record, _) = self.owned_run(scope, ik).await?;
        if record.status.is_terminal() {
            // A retry of a signal that reached the run before it ended answers as the first
            // call did: the sender cannot tell a lost answer from a lost request.
            if let Some(key) = once {
                let once_key = crate::store::signal_once_key(key);
                let kept = self
                    .store
                    .steps_with_prefix(record.id, once_key.as_str())
                    .await?
                    .iter()
                    .any(|(k, _)| *k == once_key);
                if kept {
                    return Ok(());
                }
            }
            return Err(ControlError::InvalidState {
                state: record.status,
                action: "signal",
            });
        }
        let typed = self
            .registry
            .get(&record.name)
            .and_then(|r| r.options.signals);
        let (stored_name, stored_payload) = match typed {
            Some(schema) => {
                if !schema.names().contains(&name) {
                    return Err(ControlError::InvalidSignal {
                        path: Some("name".into()),
                        message: format!(
                            "task `{}` accepts the signals {}, not `{name}`",
                            record.name,
                            schema
                                .names()
                                .iter()
                                .map(|n| format!("`{n}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                }
                schema
                    .check(name, &payload)
                    .map_err(|e| ControlError::InvalidSignal {
                        path: None,
                        message: crate::input_error::describe(None, &e.to_string()),
                    })?;
                (
                    crate::signals::TYPED_CHANNEL.to_owned(),
                    serde_json::json!({"name": name, "payload": payload}),
                )
            }
            None => (name.to_owned(), payload),
        };
        let write = Write::Signal {
            task: record.id,
            name: stored_name.clone(),
            payload: stored_payload,
            once: once.map(str::to_owned),
        };
        self.store.commit(WriteBatch::new(vec![write])).await?;
        // Read after the write: a run that parked for this signal before it landed is woken
        // here; one that parks after it finds the signal itself (`AttemptState::park`).
        if let Some(now) = self.store.task(record.id).await?
            && now.status == TaskState::Running
            && let Some(waits_for) = now.waiting.as_ref().and_then(|w| w.signal())
            && (typed.is_some() || waits_for == stored_name)
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

/// Longest sender's key of a signal, in bytes.
pub(crate) const SIGNAL_KEY_MAX_BYTES: usize = 128;

/// A sender's key: 1–128 bytes of `[A-Za-z0-9_.:-]` (a UUID, a request id).
fn check_signal_key(key: &str) -> Result<(), ControlError> {
    let ok = !key.is_empty()
        && key.len() <= SIGNAL_KEY_MAX_BYTES
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ControlError::InvalidSignal {
            path: Some("Idempotency-Key".into()),
            message: format!(
                "a signal's idempotency key is 1–{SIGNAL_KEY_MAX_BYTES} bytes of [A-Za-z0-9_.:-], like a UUID"
            ),
        })
    }
}
