//! The name grammar, as the runtime checks it (`taskflow::validate_name`), applied at compile
//! time so bad names never compile.

const RESERVED: [&str; 7] = [
    "ready",
    "error",
    "heartbeat",
    "completed",
    "failed",
    "cancelled",
    "suspended",
];

/// Why a task, event or step name is invalid, phrased for a compile error; `None` if valid.
pub(crate) fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("a name may not be empty".into());
    }
    if name.len() > 64 {
        return Some(format!(
            "`{name}` is {} bytes; names are at most 64 bytes",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Some(format!(
            "{:?} contains {c:?}; names may only contain ASCII letters, digits, `_`, `.` and `-`",
            name
        ));
    }
    let first = name.as_bytes()[0];
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Some(format!(
            "`{name}` must start with a lowercase ASCII letter or a digit"
        ));
    }
    None
}

/// As [`name_problem`], plus the reserved event names and prefixes.
pub(crate) fn event_name_problem(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    if RESERVED.contains(&lower.as_str()) {
        return Some(format!(
            "event name `{name}` is reserved: taskflow itself sends `{lower}` frames \
             (reserved: ready, error, heartbeat, completed, failed, cancelled, suspended); \
             rename the variant or set #[event(name = \"...\")]"
        ));
    }
    if lower.starts_with("step:") || lower.starts_with("taskflow.") {
        return Some(format!(
            "event name `{name}` uses a reserved prefix (`step:` and `taskflow.` belong to \
             taskflow); choose another name with #[event(name = \"...\")]"
        ));
    }
    name_problem(name).map(|p| format!("invalid event name: {p}; set #[event(name = \"...\")]"))
}
