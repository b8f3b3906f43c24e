//! [`Lifecycle`]: the events the engine itself writes to a run's log (`completed`, `failed`,
//! `suspended`, `cancelled`, and `waiting` / `wait_ended` around a durable wait). One type writes them, decodes them, says which end a run and
//! masks them for the wire, so no name or payload shape is spelled out anywhere else.

use serde::{Deserialize, Serialize};

use crate::error::ErrorRecord;
use crate::wait::{WaitKind, Waiting};

/// Message that replaces internal error messages in production.
#[cfg(feature = "axum")]
pub(crate) const MASKED: &str = "Server error";

/// A lifecycle event: a change of a run's state, logged with a sequence number like every
/// event, and sent to SSE clients as a frame of the same name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", content = "data", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Lifecycle {
    /// The run finished with an output (terminal).
    Completed {
        /// The output, as JSON. (On the wire and in the log the field is `result`: the
        /// `completed` frame's shape is a contract clients read.)
        #[serde(rename = "result")]
        output: serde_json::Value,
    },
    /// The run failed (terminal).
    Failed {
        /// What went wrong.
        message: String,
        /// The error's code (`task_error` unless the handler set one).
        code: String,
        /// The message may be shown in production (`TaskError::public`); never sent on the
        /// wire itself.
        #[serde(default)]
        public: bool,
    },
    /// The run was suspended; it may resume. Ends a stream when it is the run's newest event.
    Suspended {
        /// Why (`stopped`, `client_disconnected`, `user_context_required`, ...).
        reason: String,
    },
    /// The run was cancelled (terminal).
    Cancelled {
        /// Why.
        reason: String,
    },
    /// The run started a durable wait (`ctx.sleep`, ...) and is parked until it ends; the
    /// stream stays open.
    Waiting(Waiting),
    /// A durable wait ended and the run goes on.
    WaitEnded {
        /// The kind of wait that ended.
        kind: WaitKind,
    },
}

/// The wire names of the lifecycle events.
pub(crate) const LIFECYCLE_NAMES: [&str; 6] = [
    "completed",
    "failed",
    "suspended",
    "cancelled",
    "waiting",
    "wait_ended",
];

impl Lifecycle {
    /// Wire name of [`Lifecycle::Suspended`].
    pub(crate) const SUSPENDED: &'static str = "suspended";

    /// A `failed` event for `error`.
    #[must_use]
    pub fn failed(error: &ErrorRecord) -> Self {
        Self::Failed {
            message: error.message.clone(),
            code: error.code.clone(),
            public: error.public,
        }
    }

    /// The event's wire name.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Completed { .. } => "completed",
            Self::Failed { .. } => "failed",
            Self::Suspended { .. } => Self::SUSPENDED,
            Self::Cancelled { .. } => "cancelled",
            Self::Waiting(_) => "waiting",
            Self::WaitEnded { .. } => "wait_ended",
        }
    }

    /// Whether the event ends the run for good (`suspended` and the waits do not).
    #[must_use]
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Completed { .. } | Self::Failed { .. } | Self::Cancelled { .. }
        )
    }

    /// The payload as logged.
    #[must_use]
    pub fn data(&self) -> serde_json::Value {
        match self {
            Self::Completed { output } => serde_json::json!({ "result": output }),
            Self::Failed {
                message,
                code,
                public,
            } => serde_json::json!({ "message": message, "code": code, "public": public }),
            Self::Suspended { reason } | Self::Cancelled { reason } => {
                serde_json::json!({ "reason": reason })
            }
            Self::Waiting(waiting) => {
                serde_json::to_value(waiting).expect("a wait serialises: an enum tag and numbers")
            }
            Self::WaitEnded { kind } => serde_json::json!({ "kind": kind }),
        }
    }

    /// The payload as sent to a client: `failed` without its `public` flag, and with its
    /// message replaced by `"Server error"` when `mask` is set and the error is not public.
    #[cfg(feature = "axum")]
    #[must_use]
    pub(crate) fn wire_data(&self, mask: bool) -> serde_json::Value {
        match self {
            Self::Failed {
                message,
                code,
                public,
            } => {
                let message = if mask && !public { MASKED } else { message };
                serde_json::json!({ "message": message, "code": code })
            }
            other => other.data(),
        }
    }

    /// Decodes a logged event: `None` when `name` is not a lifecycle name (a user event).
    ///
    /// # Errors
    /// When the payload does not have the event's shape.
    pub fn decode(name: &str, data: &serde_json::Value) -> Option<Result<Self, serde_json::Error>> {
        if !is_lifecycle_name(name) {
            return None;
        }
        let tagged = serde_json::json!({ "name": name, "data": data });
        Some(serde_json::from_value(tagged))
    }
}

/// Whether `name` is one of the lifecycle events.
pub(crate) fn is_lifecycle_name(name: &str) -> bool {
    LIFECYCLE_NAMES.contains(&name)
}

/// Whether `name` is a lifecycle event that ends the run for good.
pub(crate) fn is_terminal_name(name: &str) -> bool {
    matches!(name, "completed" | "failed" | "cancelled")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_through_the_log_shape() {
        let events = [
            Lifecycle::Completed {
                output: json!({"n": 1}),
            },
            Lifecycle::Failed {
                message: "boom".into(),
                code: "task_error".into(),
                public: true,
            },
            Lifecycle::Suspended {
                reason: "stopped".into(),
            },
            Lifecycle::Cancelled {
                reason: "user".into(),
            },
            Lifecycle::Waiting(Waiting::Sleep {
                until: crate::clock::Timestamp::from_millis(1_000),
            }),
            Lifecycle::WaitEnded {
                kind: WaitKind::Sleep,
            },
        ];
        for e in events {
            let back = Lifecycle::decode(e.name(), &e.data()).unwrap().unwrap();
            assert_eq!(back, e);
            assert_eq!(is_terminal_name(e.name()), e.is_terminal());
        }
        assert!(Lifecycle::decode("tick", &json!({})).is_none());
    }

    #[cfg(feature = "axum")]
    #[test]
    fn failed_without_public_decodes_and_masks() {
        // Logs written before the flag existed.
        let old = json!({"message": "secret", "code": "task_error"});
        let e = Lifecycle::decode("failed", &old).unwrap().unwrap();
        assert_eq!(
            e.wire_data(true),
            json!({"message": MASKED, "code": "task_error"})
        );
        assert_eq!(
            e.wire_data(false),
            json!({"message": "secret", "code": "task_error"})
        );
        let public = Lifecycle::Failed {
            message: "quota".into(),
            code: "quota".into(),
            public: true,
        };
        assert_eq!(public.wire_data(true)["message"], "quota");
    }
}
