//! The status JSON of the HTTP API.

use serde_json::{Value, json};

use super::http_error::MASKED;
use crate::engine::Environment;
use crate::status::TaskStatus;

pub(crate) fn status_json(s: &TaskStatus, env: Environment, js_safe: bool) -> Value {
    let error = s.error.as_ref().map(|e| {
        let message = if env == Environment::Production && !e.public {
            MASKED
        } else {
            e.message.as_str()
        };
        json!({ "message": message, "code": e.code })
    });
    let mut v = json!({
        "idempotency_key": s.idempotency_key.as_str(),
        "task": s.task,
        "status": s.status.as_str(),
        "attempt": s.attempt,
        "max_attempts": s.max_attempts,
        "created_at": s.created_at.to_rfc3339(),
        "updated_at": s.updated_at.to_rfc3339(),
        "last_seq": s.last_seq.get(),
        "output": s.output,
        "error": error,
        "suspended_reason": s.suspended_reason,
        "cancel_reason": s.cancel_reason,
        "waiting": s.waiting,
    });
    if !s.children.is_empty() {
        v["children"] = s
            .children
            .iter()
            .map(|c| {
                json!({
                    "idempotency_key": c.idempotency_key.as_str(),
                    "task": c.task,
                    "status": c.status.map(|s| s.as_str()),
                })
            })
            .collect();
    }
    if js_safe {
        crate::sse::js_safe_integers(&mut v);
    }
    v
}
