//! The status JSON of the HTTP API.

use serde_json::{Value, json};

use super::http_error::MASKED;
use crate::clock::Timestamp;
use crate::engine::Environment;
use crate::status::TaskStatus;

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-26T10:36:05.123Z`.
pub(crate) fn rfc3339(t: Timestamp) -> String {
    let ms = t.as_millis();
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

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
        "created_at": rfc3339(s.created_at),
        "updated_at": rfc3339(s.updated_at),
        "last_seq": s.last_seq.get(),
        "output": s.output,
        "error": error,
        "suspended_reason": s.suspended_reason,
        "cancel_reason": s.cancel_reason,
    });
    if js_safe {
        crate::sse::js_safe_integers(&mut v);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(
            rfc3339(Timestamp::from_millis(0)),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339(Timestamp::from_millis(1_795_689_365_123)),
            "2026-11-26T10:36:05.123Z"
        );
        assert_eq!(
            rfc3339(Timestamp::from_millis(951_782_400_000)),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
