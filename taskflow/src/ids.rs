//! Typed identifiers: a task run, an idempotency key, an event sequence number, a step key.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Identifies one run of a task. A new run under an old idempotency key gets a new `TaskId`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub(crate) u64);

impl TaskId {
    /// The numeric value, as stored.
    #[must_use]
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

/// The content-addressed idempotency key (IK) of a submission: 43 base64url characters.
///
/// Computed from the task name, the typed input and the owner (see [`crate::TaskFlow::start`]);
/// two identical submissions by one owner share it, so the second attaches to the first.
/// Cloning it shares the text (every open stream, subscription and hub entry of a run holds
/// one).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(std::sync::Arc<str>);

impl IdempotencyKey {
    /// Length of every key this crate produces.
    pub const LEN: usize = 43;

    /// Parses a key received from outside (a URL, a header). Returns `None` unless it has the
    /// exact shape this crate produces, so a malformed key never reaches storage.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        let ok = s.len() == Self::LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(s.into()))
    }

    pub(crate) fn from_trusted(s: String) -> Self {
        Self(s.into())
    }

    /// The key as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event's sequence number: per idempotency key, gapless from 1, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seq(pub(crate) u64);

impl Seq {
    /// "Before the first event".
    pub const ZERO: Seq = Seq(0);

    /// Wraps a raw number (for example a parsed `Last-Event-ID`).
    #[must_use]
    pub fn new(n: u64) -> Self {
        Self(n)
    }

    /// The numeric value.
    #[must_use]
    pub fn get(self) -> u64 {
        self.0
    }

    pub(crate) fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The fencing epoch of a run: bumped at every attempt start, stop and cancel. A write carrying
/// an older epoch is refused inside the committing transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Epoch(pub(crate) u64);

/// The key of a recorded step result: `name#n`, n counting calls of `name` within one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StepKey(String);

impl StepKey {
    pub(crate) fn new(name: &str, n: u32) -> Self {
        Self(format!("{name}#{n}"))
    }

    pub(crate) fn from_stored(s: String) -> Self {
        Self(s)
    }

    /// The step's name: the key without its `#n` call count, e.g. `fetch` for `fetch#0`.
    #[must_use]
    pub fn name(&self) -> &str {
        self.0.rsplit_once('#').map_or(&self.0, |(name, _)| name)
    }

    /// The key as text, e.g. `fetch#0`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The call count `n` of `name#n` (`None` for a key without one).
    #[must_use]
    pub fn index(&self) -> Option<u32> {
        self.0.rsplit_once('#').and_then(|(_, n)| n.parse().ok())
    }
}

impl fmt::Display for StepKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
