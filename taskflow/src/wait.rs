//! What a run waits for while it is parked: recorded on the run (the status JSON's `waiting`)
//! and carried by the `waiting` lifecycle event.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;

/// The kind of a durable wait (the `kind` of `waiting` and `wait_ended`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WaitKind {
    /// `ctx.sleep` / `ctx.sleep_until`.
    Sleep,
    /// `ctx.wait_signal` / `ctx.next_signal`.
    Signal,
    /// `ctx.wait_child` / `ctx.join_all`: child runs that have not ended.
    Children,
}

/// What a parked run waits for. In JSON: `{"kind": "sleep", "until": "<RFC 3339>",
/// "until_ms": <ms since the Unix epoch>}` (the number is the one read back) or `{"kind":
/// "signal", "name": "<signal name>"}` (with `until` / `until_ms` when it times out) or
/// `{"kind": "children"}` (the status's `children` lists them).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Waiting {
    /// A durable sleep, until this time (by the flow's clock).
    Sleep {
        /// When the run wakes.
        until: Timestamp,
    },
    /// The next signal of this name ([`TaskContext::wait_signal`](crate::TaskContext::wait_signal)).
    Signal {
        /// The signal's name.
        name: String,
        /// When the wait gives up ([`TaskContext::wait_signal_for`](crate::TaskContext::wait_signal_for)).
        until: Option<Timestamp>,
    },
    /// Child runs to end ([`TaskContext::join_all`](crate::TaskContext::join_all)).
    Children,
}

impl Waiting {
    /// The wait's kind.
    #[must_use]
    pub fn kind(&self) -> WaitKind {
        match self {
            Self::Sleep { .. } => WaitKind::Sleep,
            Self::Signal { .. } => WaitKind::Signal,
            Self::Children => WaitKind::Children,
        }
    }

    /// When the wait ends on its own (a sleep's wake-up time).
    #[must_use]
    pub fn until(&self) -> Option<Timestamp> {
        match self {
            Self::Sleep { until } => Some(*until),
            Self::Signal { until, .. } => *until,
            Self::Children => None,
        }
    }

    /// The signal it waits for, if it waits for one.
    #[must_use]
    pub fn signal(&self) -> Option<&str> {
        match self {
            Self::Signal { name, .. } => Some(name),
            Self::Sleep { .. } | Self::Children => None,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct WaitingJson {
    kind: WaitKind,
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    until_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

impl Serialize for Waiting {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let until = self.until();
        WaitingJson {
            kind: self.kind(),
            until: until.map(Timestamp::to_rfc3339),
            until_ms: until.map(Timestamp::as_millis),
            name: self.signal().map(str::to_owned),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Waiting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = WaitingJson::deserialize(deserializer)?;
        match (json.kind, json.until_ms, json.name) {
            (WaitKind::Sleep, Some(ms), _) => Ok(Self::Sleep {
                until: Timestamp::from_millis(ms),
            }),
            (WaitKind::Sleep, None, _) => Err(serde::de::Error::missing_field("until_ms")),
            (WaitKind::Signal, until, Some(name)) => Ok(Self::Signal {
                name,
                until: until.map(Timestamp::from_millis),
            }),
            (WaitKind::Signal, _, None) => Err(serde::de::Error::missing_field("name")),
            (WaitKind::Children, _, _) => Ok(Self::Children),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleep_round_trips_with_both_forms_of_its_time() {
        let wait = Waiting::Sleep {
            until: Timestamp::from_millis(951_782_400_123),
        };
        let json = serde_json::to_value(&wait).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "sleep", "until": "2000-02-29T00:00:00.123Z", "until_ms": 951_782_400_123u64})
        );
        assert_eq!(serde_json::from_value::<Waiting>(json).unwrap(), wait);
        assert!(serde_json::from_value::<Waiting>(serde_json::json!({"kind": "sleep"})).is_err());
        let signal = Waiting::Signal {
            name: "decision".into(),
            until: None,
        };
        let json = serde_json::to_value(&signal).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "signal", "name": "decision"})
        );
        assert_eq!(serde_json::from_value::<Waiting>(json).unwrap(), signal);
        let json = serde_json::to_value(Waiting::Children).unwrap();
        assert_eq!(json, serde_json::json!({"kind": "children"}));
        assert_eq!(
            serde_json::from_value::<Waiting>(json).unwrap(),
            Waiting::Children
        );
    }
}
