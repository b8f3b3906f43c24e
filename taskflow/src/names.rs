//! The one name grammar shared by tasks, events and steps, and the reserved event names: the
//! rules of `taskflow-rules` (which the macros check at compile time), as run-time errors.

/// Wire names the bridge and the engine use for their own frames and lifecycle events.
pub const RESERVED_EVENT_NAMES: [&str; 9] = taskflow_rules::RESERVED_EVENT_NAMES;

/// Why a name was refused. The message says what is wrong, in the same words as the
/// compile-time check of `#[task]` and `#[events]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Empty, longer than 64 bytes, a byte outside `[A-Za-z0-9_.-]`, or a first byte outside
    /// `[a-z0-9]`.
    #[error("{message}")]
    Grammar {
        /// The name, escaped for display.
        name: String,
        /// What is wrong with it.
        message: String,
    },
    /// An event or signal name that collides with a reserved name or prefix.
    #[error("{message}; choose another name")]
    Reserved {
        /// The name.
        name: String,
        /// What is wrong with it.
        message: String,
    },
}

fn shown(name: &str) -> String {
    name.chars()
        .take(80)
        .collect::<String>()
        .escape_debug()
        .to_string()
}

/// Checks the grammar of task, event and step names: 1–64 bytes of `[A-Za-z0-9_.-]`, starting
/// with `[a-z0-9]`.
///
/// # Errors
/// [`NameError`] saying what is wrong.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    taskflow_rules::check_name(name).map_err(|p| {
        let name = shown(name);
        NameError::Grammar {
            message: p.describe(&name),
            name,
        }
    })
}

/// Signal names that are control actions (`stop`, `resume`, `cancel`).
pub const RESERVED_SIGNAL_NAMES: [&str; 3] = taskflow_rules::RESERVED_SIGNAL_NAMES;

/// Checks a signal name: not a control action's name (case-insensitively), then the grammar
/// of step names.
///
/// # Errors
/// [`NameError`] saying what is wrong.
pub fn validate_signal_name(name: &str) -> Result<(), NameError> {
    use taskflow_rules::SignalNameProblem;
    taskflow_rules::check_signal_name(name).map_err(|p| {
        let shown = shown(name);
        let message = p.describe(&shown);
        match p {
            SignalNameProblem::Grammar(_) => NameError::Grammar {
                name: shown,
                message,
            },
            SignalNameProblem::Reserved(_) => NameError::Reserved {
                name: shown,
                message,
            },
        }
    })
}

/// Checks an event name: the reserved set (case-insensitively) and the reserved prefixes
/// `step:` and `taskflow.`, then the grammar.
///
/// # Errors
/// [`NameError`] saying what is wrong.
pub fn validate_event_name(name: &str) -> Result<(), NameError> {
    use taskflow_rules::EventNameProblem;
    taskflow_rules::check_event_name(name).map_err(|p| {
        let shown = shown(name);
        let message = p.describe(&shown);
        match p {
            EventNameProblem::Grammar(_) => NameError::Grammar {
                name: shown,
                message,
            },
            _ => NameError::Reserved {
                name: shown,
                message,
            },
        }
    })
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
