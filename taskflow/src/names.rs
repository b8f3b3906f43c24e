//! The one name grammar shared by tasks, events and steps, and the reserved event names.

/// Wire names the bridge and the engine use for their own frames and lifecycle events.
pub const RESERVED_EVENT_NAMES: [&str; 7] = [
    "ready",
    "error",
    "heartbeat",
    "completed",
    "failed",
    "cancelled",
    "suspended",
];

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Empty or longer than 64 bytes.
    #[error("name `{0}` must be 1 to 64 bytes long")]
    Length(String),
    /// A byte outside `[A-Za-z0-9_.-]`, or a first byte outside `[a-z0-9]`.
    #[error(
        "name `{0}` may only contain `A-Z a-z 0-9 _ . -` and must start with a lowercase letter or digit"
    )]
    Characters(String),
    /// An event name that collides with a reserved one.
    #[error("event name `{0}` is reserved by taskflow; rename the event")]
    Reserved(String),
}

/// Checks the grammar of task, event and step names: 1–64 bytes of `[A-Za-z0-9_.-]`, starting
/// with `[a-z0-9]`.
///
/// # Errors
/// [`NameError`] saying what is wrong.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > 64 {
        return Err(NameError::Length(name.chars().take(80).collect()));
    }
    let bytes = name.as_bytes();
    let first_ok = bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit();
    let rest_ok = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(NameError::Characters(name.escape_debug().to_string()))
    }
}

/// Checks an event name: the grammar, then the reserved set (case-insensitively) and the
/// reserved prefixes `step:` and `taskflow.`.
///
/// # Errors
/// [`NameError`] saying what is wrong.
pub fn validate_event_name(name: &str) -> Result<(), NameError> {
    validate_name(name)?;
    let lower = name.to_ascii_lowercase();
    if RESERVED_EVENT_NAMES.contains(&lower.as_str()) || lower.starts_with("taskflow.") {
        return Err(NameError::Reserved(name.to_owned()));
    }
    Ok(())
}

pub(crate) fn is_lifecycle_event(name: &str) -> bool {
    matches!(name, "suspended" | "completed" | "failed" | "cancelled")
}

pub(crate) fn is_terminal_event(name: &str) -> bool {
    matches!(name, "completed" | "failed" | "cancelled")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        assert!(validate_name("count-to-n").is_ok());
        assert!(validate_name("a.B_9-").is_ok());
        assert!(validate_name(&"a".repeat(64)).is_ok());
        for bad in [
            "",
            "A",
            "-a",
            "a b",
            "a\n",
            "a#1",
            "a/b",
            "é",
            &"a".repeat(65),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn reserved_event_names() {
        for bad in ["ready", "completed", "cOMPLETED", "taskflow.x", "heartbeat"] {
            assert!(validate_event_name(bad).is_err(), "{bad:?} accepted");
        }
        // `step:` contains a colon, which the grammar already refuses.
        assert!(validate_event_name("step:x").is_err());
        assert!(validate_event_name("tick").is_ok());
    }
}
