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
}

/// What a parked run waits for. In JSON: `{"kind": "sleep", "until": "<RFC 3339>",
/// "until_ms": <ms since the Unix epoch>}` (the number is the one read back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Waiting {
    /// A durable sleep, until this time (by the flow's clock).
    Sleep {
        /// When the run wakes.
        until: Timestamp,
    },
}

impl Waiting {
    /// The wait's kind.
    #[must_use]
    pub fn kind(&self) -> WaitKind {
        match self {
            Self::Sleep { .. } => WaitKind::Sleep,
        }
    }

    /// When the wait ends on its own (a sleep's wake-up time).
    #[must_use]
    pub fn until(&self) -> Option<Timestamp> {
        match self {
            Self::Sleep { until } => Some(*until),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct WaitingJson {
    kind: WaitKind,
    #[serde(default, skip_deserializing)]
    until: Option<String>,
    until_ms: Option<u64>,
}

impl Serialize for Waiting {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let until = self.until();
        WaitingJson {
            kind: self.kind(),
            until: until.map(Timestamp::to_rfc3339),
            until_ms: until.map(Timestamp::as_millis),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Waiting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = WaitingJson::deserialize(deserializer)?;
        match (json.kind, json.until_ms) {
            (WaitKind::Sleep, Some(ms)) => Ok(Self::Sleep {
                until: Timestamp::from_millis(ms),
            }),
            (WaitKind::Sleep, None) => Err(serde::de::Error::missing_field("until_ms")),
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
        let json = serde_json::to_value(wait).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "sleep", "until": "2000-02-29T00:00:00.123Z", "until_ms": 951_782_400_123u64})
        );
        assert_eq!(serde_json::from_value::<Waiting>(json).unwrap(), wait);
        assert!(serde_json::from_value::<Waiting>(serde_json::json!({"kind": "sleep"})).is_err());
    }
}
