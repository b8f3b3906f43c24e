//! Size limits: payloads (input, output, step results, events) and control reasons.

use super::Inner;
use crate::error::{PayloadKind, PayloadTooLarge};

/// Longest accepted stop or cancel reason, in characters.
pub const MAX_REASON_CHARS: usize = taskflow_rules::MAX_REASON_CHARS;

impl Inner {
    /// Refuses `value` if its JSON is over the payload limit.
    pub(super) fn check_payload(
        &self,
        kind: PayloadKind,
        value: &serde_json::Value,
    ) -> Result<(), PayloadTooLarge> {
        check_payload(self.config.payload_limit, kind, value)
    }
}

/// Refuses `value` if its JSON is over `limit` bytes.
pub(super) fn check_payload(
    limit: usize,
    kind: PayloadKind,
    value: &serde_json::Value,
) -> Result<(), PayloadTooLarge> {
    let mut counter = ByteCounter { n: 0, limit };
    // Counting stops early once over the limit; an Err here only means "too large".
    let _ = serde_json::to_writer(&mut counter, value);
    check_payload_len(limit, kind, counter.n)
}

/// Refuses `size` bytes of JSON if over `limit`.
pub(super) fn check_payload_len(
    limit: usize,
    kind: PayloadKind,
    size: usize,
) -> Result<(), PayloadTooLarge> {
    if size > limit {
        return Err(PayloadTooLarge { kind, size, limit });
    }
    Ok(())
}

/// Checks a stop or cancel reason's length.
pub(super) fn check_reason(reason: Option<&str>) -> Result<(), crate::error::ControlError> {
    if let Some(reason) = reason {
        let len = reason.chars().count();
        if len > MAX_REASON_CHARS {
            return Err(crate::error::ControlError::ReasonTooLong { len });
        }
    }
    Ok(())
}

/// Counts serialised bytes, giving up once past the limit.
struct ByteCounter {
    n: usize,
    limit: usize,
}

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.n += buf.len();
        if self.n > self.limit {
            return Err(std::io::Error::other("over the limit"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_limit_is_inclusive() {
        let v = serde_json::json!("abc"); // 5 bytes of JSON
        assert!(check_payload(5, PayloadKind::Event, &v).is_ok());
        let e = check_payload(4, PayloadKind::Event, &v).unwrap_err();
        assert_eq!((e.size, e.limit), (5, 4));
        assert!(check_reason(Some(&"x".repeat(MAX_REASON_CHARS))).is_ok());
        assert!(check_reason(Some(&"é".repeat(MAX_REASON_CHARS + 1))).is_err());
    }
}
