//! Typed signals: the `#[signals]` enum a task declares with `#[task(signals = ..)]`, each
//! variant a signal name with its payload. A task that declares one has every signal sent to
//! it checked against the enum when it is sent (an unknown name or a payload that does not
//! decode is refused, nothing stored), and receives them in arrival order, whatever their
//! name, with [`TaskContext::next_signal`](crate::TaskContext::next_signal).

use crate::task::EventDecodeError;

/// A typed set of signals (the enum under `#[signals]`): like [`Events`](crate::Events), a
/// wire name and a JSON payload per variant.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a #[signals] enum",
    label = "`signals = ...` takes an enum under #[signals]",
    note = "put #[signals] on the enum (an #[events] enum is what a task emits, not what it receives)"
)]
pub trait Signals: Send + Sync + Sized + 'static {
    /// Every signal name, in declaration order.
    const NAMES: &'static [&'static str];

    /// This signal's name (one of [`Self::NAMES`]).
    fn name(&self) -> &'static str;

    /// This signal's JSON payload (the body of `POST /tasks/{ik}/signals/{name}`).
    ///
    /// # Errors
    /// When a payload type's `Serialize` fails.
    fn to_payload(&self) -> Result<serde_json::Value, serde_json::Error>;

    /// Rebuilds a signal from its name and payload.
    ///
    /// # Errors
    /// When the name is unknown or the payload does not decode.
    fn decode(name: &str, payload: serde_json::Value) -> Result<Self, EventDecodeError>;
}

/// What the engine keeps of a task's declared signals: their names and a check of a payload
/// (set by `#[task(signals = S)]`, or [`TaskOptions::signals`](crate::TaskOptions::signals)).
#[derive(Clone, Copy)]
pub struct SignalSchema {
    type_name: &'static str,
    names: &'static [&'static str],
    check: fn(&str, serde_json::Value) -> Result<(), EventDecodeError>,
}

impl SignalSchema {
    /// The schema of `S`.
    #[must_use]
    pub fn of<S: Signals>() -> Self {
        Self {
            type_name: std::any::type_name::<S>(),
            names: S::NAMES,
            check: |name, payload| S::decode(name, payload).map(drop),
        }
    }

    /// The accepted signal names.
    #[must_use]
    pub fn names(&self) -> &'static [&'static str] {
        self.names
    }

    /// The Rust type of the enum (for messages).
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// Whether `S` is this schema's type.
    pub(crate) fn is<S: Signals>(&self) -> bool {
        self.type_name == std::any::type_name::<S>() && self.names == S::NAMES
    }

    /// Checks that `payload` is a signal `name` of this set.
    pub(crate) fn check(
        &self,
        name: &str,
        payload: &serde_json::Value,
    ) -> Result<(), EventDecodeError> {
        (self.check)(name, payload.clone())
    }

    /// The `name` of a typed wait's `waiting` status: the one name, or them all joined by
    /// `|` (`approve|reject`).
    pub(crate) fn wait_name(&self) -> String {
        self.names.join("|")
    }
}

impl std::fmt::Debug for SignalSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalSchema")
            .field("type_name", &self.type_name)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl PartialEq for SignalSchema {
    fn eq(&self, other: &Self) -> bool {
        self.type_name == other.type_name && self.names == other.names
    }
}

impl Eq for SignalSchema {}

/// The internal signal name under which a typed task's signals are stored, in arrival order
/// (`$` is outside the name grammar, so no untyped signal can take it); each stored payload is
/// `{"name": ..., "payload": ...}`.
pub(crate) const TYPED_CHANNEL: &str = "$typed";
