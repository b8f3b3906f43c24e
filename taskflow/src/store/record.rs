//! The persisted shape of a run and of a step result.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::ErrorRecord;
use crate::identity::UserId;
use crate::ids::{Epoch, IdempotencyKey, Seq, TaskId};
use crate::status::TaskState;
use crate::task::ExecuteMode;
use crate::wait::Waiting;

/// One run as stored. Never holds a secret of the user context: only the owner's id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskRecord {
    /// The run's id (assigned by the store).
    pub id: TaskId,
    /// Registered task name.
    pub name: String,
    /// Idempotency key.
    pub ik: IdempotencyKey,
    /// Owner; `None` = service identity.
    pub owner: Option<UserId>,
    /// State.
    pub status: TaskState,
    /// Input JSON.
    pub input: serde_json::Value,
    /// Output JSON once completed.
    pub output: Option<serde_json::Value>,
    /// Error once failed.
    pub error: Option<ErrorRecord>,
    /// Attempts started.
    pub attempt: u32,
    /// Attempts that ended in `Err` or a panic.
    pub failed_attempts: u32,
    /// Attempt budget.
    pub max_attempts: u32,
    /// Resubmission rule.
    pub execute_mode: ExecuteMode,
    /// Needs a live user context.
    pub on_behalf_of: bool,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change to the record.
    pub updated_at: Timestamp,
    /// Last heartbeat of a running attempt.
    pub heartbeat_at: Timestamp,
    /// When the next attempt may start (a retry's backoff).
    pub next_attempt_at: Option<Timestamp>,
    /// Why suspended or cancelled.
    pub suspended_reason: Option<String>,
    /// Seq of this run's first event.
    pub first_seq: Seq,
    /// Fencing epoch (assigned by the store).
    pub epoch: Epoch,
    /// Set when the HTTP bridge started the run with the disconnect rule: the grace, in
    /// milliseconds, after which the run is suspended once no SSE client follows it. Kept so
    /// a run recovered after a restart is watched the same way.
    #[serde(default)]
    pub disconnect_grace_ms: Option<u64>,
    /// The task's code version that created the run (`#[task(version = N)]`; records from
    /// before versions existed are version 1).
    #[serde(default = "first_version")]
    pub version: u32,
    /// Set while the run is parked in a durable wait (`ctx.sleep`): no attempt runs and no
    /// slot is held until it ends.
    #[serde(default)]
    pub waiting: Option<Waiting>,
    /// The run that started this one with `ctx.start_child`: it is woken when this run
    /// ends.
    #[serde(default)]
    pub parent: Option<TaskId>,
}

fn first_version() -> u32 {
    1
}

impl TaskRecord {
    /// A fresh `created` record; the store fills `id`, `epoch` and `first_seq`.
    #[must_use]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new_run(
        name: &str,
        ik: IdempotencyKey,
        owner: Option<UserId>,
        input: serde_json::Value,
        max_attempts: u32,
        execute_mode: ExecuteMode,
        on_behalf_of: bool,
        now: Timestamp,
    ) -> Self {
        Self {
            id: TaskId(0),
            name: name.to_owned(),
            ik,
            owner,
            status: TaskState::Created,
            input,
            output: None,
            error: None,
            attempt: 0,
            failed_attempts: 0,
            max_attempts,
            execute_mode,
            on_behalf_of,
            created_at: now,
            updated_at: now,
            heartbeat_at: now,
            next_attempt_at: None,
            suspended_reason: None,
            first_seq: Seq(1),
            epoch: Epoch(0),
            disconnect_grace_ms: None,
            version: 1,
            waiting: None,
            parent: None,
        }
    }

    /// When the run last showed signs of life: its last heartbeat or write, or (parked in a
    /// wait) the end of its wait, so a long sleep does not count as an interruption.
    #[must_use]
    pub fn last_alive(&self) -> Timestamp {
        let until = self.waiting.as_ref().and_then(Waiting::until);
        let alive = self.heartbeat_at.max(self.updated_at);
        until.map_or(alive, |until| alive.max(until))
    }

    /// Applies `patch` (the store calls this inside its transaction).
    pub fn apply(&mut self, patch: &TaskPatch) {
        if let Some(s) = patch.status {
            self.status = s;
        }
        if let Some(a) = patch.attempt {
            self.attempt = a;
        }
        if let Some(f) = patch.failed_attempts {
            self.failed_attempts = f;
        }
        if let Some(o) = &patch.output {
            self.output = Some(o.clone());
        }
        if let Some(e) = &patch.error {
            self.error = Some(e.clone());
        }
        if let Some(n) = patch.next_attempt_at {
            self.next_attempt_at = n;
        }
        if let Some(r) = &patch.suspended_reason {
            self.suspended_reason.clone_from(r);
        }
        if let Some(w) = &patch.waiting {
            self.waiting.clone_from(w);
        }
        if patch.bump_epoch {
            self.epoch = Epoch(self.epoch.0 + 1);
        }
        if patch.heartbeat {
            self.heartbeat_at = patch.now;
        }
        self.updated_at = patch.now;
    }
}

/// A change to a run's record.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TaskPatch {
    /// The time of the change (becomes `updated_at`).
    pub now: Timestamp,
    /// New state.
    pub status: Option<TaskState>,
    /// New attempt counter.
    pub attempt: Option<u32>,
    /// New failed-attempt counter.
    pub failed_attempts: Option<u32>,
    /// Output.
    pub output: Option<serde_json::Value>,
    /// Error.
    pub error: Option<ErrorRecord>,
    /// New backoff deadline (`Some(None)` clears it).
    pub next_attempt_at: Option<Option<Timestamp>>,
    /// New suspend reason (`Some(None)` clears it).
    pub suspended_reason: Option<Option<String>>,
    /// Advance the fencing epoch (fences off the current attempt).
    pub bump_epoch: bool,
    /// Record a heartbeat at `now`.
    pub heartbeat: bool,
    /// Claim the run for this process (an attempt starts): a shared store refuses the batch
    /// with [`StoreError::ClaimedElsewhere`](crate::error::StoreError::ClaimedElsewhere)
    /// while another live process holds its lease, with
    /// [`StoreError::AtCapacity`](crate::error::StoreError::AtCapacity) while the claim's
    /// limits are reached across all processes, and gives this process the lease.
    pub claim: Option<Claim>,
    /// A new wait (`Some(None)` ends it).
    pub waiting: Option<Option<Waiting>>,
    /// The run parks for this long: a shared store gives up this process's lease and lets
    /// it expire when the wait is due, so whichever process is free then claims it
    /// (`Duration::MAX`: never, until something else wakes it).
    pub park_for: Option<std::time::Duration>,
}

/// The limits an attempt start must fit in, across every process sharing the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// Runs executing at once, in all.
    pub max_running: usize,
    /// Runs executing at once per owner (the service identity has none).
    pub max_running_per_user: usize,
}

impl TaskPatch {
    /// A patch that only touches `updated_at`.
    #[must_use]
    pub fn at(now: Timestamp) -> Self {
        Self {
            now,
            status: None,
            attempt: None,
            failed_attempts: None,
            output: None,
            error: None,
            next_attempt_at: None,
            suspended_reason: None,
            bump_epoch: false,
            heartbeat: false,
            claim: None,
            waiting: None,
            park_for: None,
        }
    }
}

/// A recorded step result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step's key, `name#n`.
    #[serde(rename = "k")]
    pub key: crate::ids::StepKey,
    /// The step's `Ok` value.
    #[serde(rename = "v")]
    pub value: serde_json::Value,
    /// `file:line:col` of the call that recorded it.
    #[serde(rename = "s")]
    pub site: String,
    /// When and by which attempt a `ctx.step` body ran (`None` on the engine's own records
    /// and on records written before step timings existed).
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<StepTiming>,
}

/// When and by which attempt a step's body ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTiming {
    /// The attempt (1 for the first).
    #[serde(rename = "a")]
    pub attempt: u32,
    /// When the body started, by the flow's clock.
    #[serde(rename = "t")]
    pub at: crate::clock::Timestamp,
    /// How long the body ran.
    #[serde(rename = "d")]
    pub duration_ms: u64,
}

impl StepRecord {
    /// Encodes a record from a value that is already JSON text, serialising it only once.
    ///
    /// # Errors
    /// When `key` or `site` cannot be encoded (they always can; kept for symmetry).
    pub fn encode(
        key: &crate::ids::StepKey,
        value_json: &[u8],
        site: &str,
    ) -> Result<Vec<u8>, serde_json::Error> {
        Self::encode_with(key, value_json, site, None)
    }

    /// [`encode`](Self::encode) with the step body's timing.
    ///
    /// # Errors
    /// As [`encode`](Self::encode).
    pub fn encode_timed(
        key: &crate::ids::StepKey,
        value_json: &[u8],
        site: &str,
        timing: &StepTiming,
    ) -> Result<Vec<u8>, serde_json::Error> {
        Self::encode_with(key, value_json, site, Some(timing))
    }

    fn encode_with(
        key: &crate::ids::StepKey,
        value_json: &[u8],
        site: &str,
        timing: Option<&StepTiming>,
    ) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = Vec::with_capacity(value_json.len() + key.as_str().len() + site.len() + 64);
        out.extend_from_slice(b"{\"k\":");
        serde_json::to_writer(&mut out, key)?;
        out.extend_from_slice(b",\"v\":");
        out.extend_from_slice(value_json);
        out.extend_from_slice(b",\"s\":");
        serde_json::to_writer(&mut out, site)?;
        if let Some(timing) = timing {
            out.extend_from_slice(b",\"m\":");
            serde_json::to_writer(&mut out, timing)?;
        }
        out.push(b'}');
        Ok(out)
    }
}

impl TaskRecord {
    pub(crate) fn id_for_store(&mut self, id: TaskId, epoch: Epoch, first_seq: Seq) {
        self.id = id;
        self.epoch = epoch;
        self.first_seq = first_seq;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_step_record_round_trips() {
        let key = crate::ids::StepKey::new("fetch", 3);
        let value = serde_json::json!({"rows": [1, 2], "s": "a\"b"});
        let bytes = StepRecord::encode(
            &key,
            &serde_json::to_vec(&value).expect("json"),
            "src/x.rs:1:2",
        )
        .expect("encode");
        let back: StepRecord = serde_json::from_slice(&bytes).expect("decode");
        assert_eq!(back.key, key);
        assert_eq!(back.value, value);
        assert_eq!(back.site, "src/x.rs:1:2");
        assert_eq!(back.timing, None);
        let timing = StepTiming {
            attempt: 2,
            at: crate::clock::Timestamp::from_millis(1_700_000_000_123),
            duration_ms: 45,
        };
        let bytes = StepRecord::encode_timed(&key, b"[1]", "s", &timing).expect("encode");
        let back: StepRecord = serde_json::from_slice(&bytes).expect("decode");
        assert_eq!(back.timing, Some(timing));
        assert_eq!(back.value, serde_json::json!([1]));
    }
}
