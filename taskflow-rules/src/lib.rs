//! The rules `taskflow` checks at run time and `taskflow-macros` checks at compile time, in one
//! place: the name grammar, the reserved event names, the task settings people reach for from
//! other frameworks (and what to write instead), and the defaults of a task's settings.
//!
//! Dependency-free, so the proc-macro crate can use it as well as the runtime. Users never
//! depend on it directly.

/// Longest task, event or step name, in bytes.
pub const NAME_MAX_BYTES: usize = 64;

/// Wire names taskflow uses for its own frames and lifecycle events; an event may not take one
/// (compared case-insensitively).
pub const RESERVED_EVENT_NAMES: [&str; 9] = [
    "ready",
    "error",
    "heartbeat",
    "completed",
    "failed",
    "cancelled",
    "suspended",
    "waiting",
    "wait_ended",
];

/// Prefixes of event names that belong to taskflow (compared case-insensitively).
pub const RESERVED_EVENT_PREFIXES: [&str; 2] = ["step:", "taskflow."];

/// Longest accepted stop or cancel reason, in characters.
pub const MAX_REASON_CHARS: usize = 512;

/// Why a name breaks the grammar: 1–64 bytes of `[A-Za-z0-9_.-]`, starting with `[a-z0-9]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameProblem {
    /// The name is empty.
    Empty,
    /// The name is longer than [`NAME_MAX_BYTES`] (its length in bytes).
    TooLong(usize),
    /// The name holds a character outside `[A-Za-z0-9_.-]`.
    Character(char),
    /// The name starts with something other than a lowercase ASCII letter or a digit.
    First,
}

impl NameProblem {
    /// The problem with `name`, as a sentence (the macros add how to fix it in their syntax).
    #[must_use]
    pub fn describe(&self, name: &str) -> String {
        match self {
            Self::Empty => "a name may not be empty".to_owned(),
            Self::TooLong(len) => {
                format!("`{name}` is {len} bytes; names are at most {NAME_MAX_BYTES} bytes")
            }
            Self::Character(c) => format!(
                "{name:?} contains {c:?}; names may only contain ASCII letters, digits, `_`, `.` and `-`"
            ),
            Self::First => {
                format!("`{name}` must start with a lowercase ASCII letter or a digit")
            }
        }
    }
}

/// Checks the grammar shared by task, event and step names.
///
/// # Errors
/// The first problem found.
pub fn check_name(name: &str) -> Result<(), NameProblem> {
    if name.is_empty() {
        return Err(NameProblem::Empty);
    }
    if name.len() > NAME_MAX_BYTES {
        return Err(NameProblem::TooLong(name.len()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(NameProblem::Character(c));
    }
    let first = name.as_bytes()[0];
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(NameProblem::First);
    }
    Ok(())
}

/// Why an event name is refused: the grammar, or a name or prefix taskflow reserves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventNameProblem {
    /// The reserved name it collides with (lowercase).
    Reserved(&'static str),
    /// The reserved prefix it starts with.
    ReservedPrefix(&'static str),
    /// It breaks the name grammar.
    Grammar(NameProblem),
}

impl EventNameProblem {
    /// The problem with event name `name`, as a sentence.
    #[must_use]
    pub fn describe(&self, name: &str) -> String {
        match self {
            Self::Reserved(reserved) => format!(
                "event name `{name}` is reserved: taskflow itself sends `{reserved}` frames (reserved: {})",
                RESERVED_EVENT_NAMES.join(", ")
            ),
            Self::ReservedPrefix(_) => format!(
                "event name `{name}` uses a reserved prefix (`{}` belong to taskflow)",
                RESERVED_EVENT_PREFIXES.join("` and `")
            ),
            Self::Grammar(p) => format!("invalid event name: {}", p.describe(name)),
        }
    }
}

/// Checks an event name: reserved names and prefixes first (so `Completed` says "reserved",
/// not "uppercase"), then the grammar.
///
/// # Errors
/// The first problem found.
pub fn check_event_name(name: &str) -> Result<(), EventNameProblem> {
    let lower = name.to_ascii_lowercase();
    if let Some(reserved) = RESERVED_EVENT_NAMES.iter().find(|r| **r == lower) {
        return Err(EventNameProblem::Reserved(reserved));
    }
    if let Some(prefix) = RESERVED_EVENT_PREFIXES
        .iter()
        .find(|p| lower.starts_with(**p))
    {
        return Err(EventNameProblem::ReservedPrefix(prefix));
    }
    check_name(name).map_err(EventNameProblem::Grammar)
}

/// Signal names that are the control actions' names: a signal may not take one (compared
/// case-insensitively), so "send `cancel`" can never be mistaken for the cancel action in a
/// console, a client or a log.
pub const RESERVED_SIGNAL_NAMES: [&str; 3] = ["stop", "resume", "cancel"];

/// Why a signal name is refused: the grammar, or a name taskflow reserves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalNameProblem {
    /// The reserved name it collides with (lowercase).
    Reserved(&'static str),
    /// It breaks the name grammar.
    Grammar(NameProblem),
}

impl SignalNameProblem {
    /// The problem with signal name `name`, as a sentence.
    #[must_use]
    pub fn describe(&self, name: &str) -> String {
        match self {
            Self::Reserved(reserved) => format!(
                "signal name `{name}` is reserved: `{reserved}` is a control action of every run (reserved: {})",
                RESERVED_SIGNAL_NAMES.join(", ")
            ),
            Self::Grammar(p) => format!("invalid signal name: {}", p.describe(name)),
        }
    }
}

/// Checks a signal name: the reserved names first, then the grammar (that of step names).
///
/// # Errors
/// The first problem found.
pub fn check_signal_name(name: &str) -> Result<(), SignalNameProblem> {
    let lower = name.to_ascii_lowercase();
    if let Some(reserved) = RESERVED_SIGNAL_NAMES.iter().find(|r| **r == lower) {
        return Err(SignalNameProblem::Reserved(reserved));
    }
    check_name(name).map_err(SignalNameProblem::Grammar)
}

/// The keys `#[task(...)]` accepts.
pub const TASK_KEYS: [&str; 11] = [
    "name",
    "events",
    "signals",
    "max_attempts",
    "auto_recover",
    "recovery_max_age",
    "execute_mode",
    "on_behalf_of",
    "on_disconnect",
    "version",
    "crate",
];

/// Task settings people reach for from other frameworks, with what to do instead.
pub const FORBIDDEN_TASK_KEYS: [(&str, &str); 7] = [
    (
        "retry",
        "use `max_attempts = N`: attempts that end in `Err` or a panic are retried with backoff; crashes never use one up",
    ),
    (
        "retries",
        "use `max_attempts = N`: attempts that end in `Err` or a panic are retried with backoff; crashes never use one up",
    ),
    (
        "cache",
        "remove it: the idempotency key (task name + input + owner) already deduplicates, so an identical submission attaches to the existing run",
    ),
    (
        "timeout",
        "remove it: use `flow.stop(..)` (cooperative, via `ctx.cancelled()`) and stale-run recovery instead of an interceptor timeout",
    ),
    (
        "stream",
        "remove it: the wire shape is the `#[events]` enum given with `events = ...`, streamed over SSE by `execute_task`",
    ),
    (
        "user_id",
        "remove it: identity only comes from the request's user context (`flow.as_user(&user)` or the axum extractor); use `on_behalf_of` if the task needs the caller's credentials",
    ),
    (
        "user",
        "remove it: identity only comes from the request's user context (`flow.as_user(&user)` or the axum extractor); use `on_behalf_of` if the task needs the caller's credentials",
    ),
];

/// What to write instead of a forbidden task key, if `key` is one.
#[must_use]
pub fn forbidden_task_key(key: &str) -> Option<&'static str> {
    FORBIDDEN_TASK_KEYS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, fix)| *fix)
}

/// Defaults of a task's settings (what `#[task]` uses for a key the user did not write).
pub mod defaults {
    /// Attempts that may end in `Err` or a panic before the run fails.
    pub const MAX_ATTEMPTS: u32 = 3;
    /// Recover interrupted runs at start-up.
    pub const AUTO_RECOVER: bool = true;
    /// Runs interrupted longer ago than this fail instead of recovering, in milliseconds.
    pub const RECOVERY_MAX_AGE_MS: u64 = 5 * 60 * 1000;
}

/// Parses a duration literal `^[0-9]+(ms|s|m|h)$` into milliseconds.
#[must_use]
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// The task name `#[task]` derives from a fn name when `name` is not given: `_` becomes `-`.
#[must_use]
pub fn default_task_name(fn_name: &str) -> String {
    fn_name.trim_start_matches("r#").replace('_', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        assert_eq!(check_name("count-to-n"), Ok(()));
        assert_eq!(check_name("a.B_9-"), Ok(()));
        assert_eq!(check_name(&"a".repeat(64)), Ok(()));
        assert_eq!(check_name(""), Err(NameProblem::Empty));
        assert_eq!(check_name(&"a".repeat(65)), Err(NameProblem::TooLong(65)));
        assert_eq!(check_name("a#1"), Err(NameProblem::Character('#')));
        assert_eq!(check_name("Ab"), Err(NameProblem::First));
        for bad in ["-a", "a b", "a\n", "a/b", "é"] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn event_names() {
        assert_eq!(
            check_event_name("cOMPLETED"),
            Err(EventNameProblem::Reserved("completed"))
        );
        assert_eq!(
            check_event_name("step:x"),
            Err(EventNameProblem::ReservedPrefix("step:"))
        );
        assert_eq!(
            check_event_name("taskflow.x"),
            Err(EventNameProblem::ReservedPrefix("taskflow."))
        );
        assert_eq!(check_event_name("tick"), Ok(()));
    }

    #[test]
    fn durations_and_defaults() {
        assert_eq!(parse_duration_ms("5m"), Some(defaults::RECOVERY_MAX_AGE_MS));
        assert_eq!(parse_duration_ms("0s"), Some(0));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        for bad in ["", "m", "5", "5d", "1.5s", "-1s"] {
            assert_eq!(parse_duration_ms(bad), None, "{bad:?}");
        }
        assert_eq!(default_task_name("count_to_n"), "count-to-n");
        assert_eq!(default_task_name("r#type"), "type");
        assert!(forbidden_task_key("retries").is_some());
        assert!(forbidden_task_key("name").is_none());
    }
}
