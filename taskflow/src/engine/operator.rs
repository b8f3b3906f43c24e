//! Operator access: every owner's runs, for a console or an admin tool. An [`Operator`] sees
//! and steers any run (the ownership rule of the other calls does not apply), so only code
//! that has already decided the caller is an operator should hold one
//! (`taskflow::axum::console` checks its `ConsoleAccess` first).

use std::collections::BTreeMap;

use serde::Serialize;

use super::TaskFlow;
use super::control::Action;
use super::query::status_of;
use super::scope::Scope;
use super::subscription::EventSubscription;
use crate::error::ControlError;
use crate::identity::UserId;
use crate::ids::{IdempotencyKey, StepKey, TaskId};
use crate::status::{SubscribeFrom, TaskState, TaskStatus};
use crate::store::Scan;

/// The internal step name of a failed attempt's record (`$attempt#{n}`).
pub(crate) const ATTEMPT_STEP: &str = "$attempt";

/// The largest page [`Operator::list`] returns.
pub const MAX_PAGE: usize = 500;

/// Which runs [`Operator::list`] returns: every owner's by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunFilter {
    /// Only runs in one of these states (all when empty).
    pub states: Vec<TaskState>,
    /// Only runs of this task.
    pub task: Option<String>,
    /// Only runs of this owner (`Some(None)`: the service identity's).
    pub owner: Option<Option<UserId>>,
    /// Only runs whose idempotency key starts with this.
    pub key_prefix: Option<String>,
    /// At most this many (default 50, at most [`MAX_PAGE`]).
    pub limit: Option<usize>,
    /// The cursor: only runs older than this one (the previous page's `next`).
    pub before: Option<TaskId>,
}

/// One page of [`Operator::list`], newest first.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RunPage {
    /// The runs (each key's current run).
    pub runs: Vec<TaskStatus>,
    /// The cursor of the next page (`before`), `None` on the last page. Runs started after
    /// the first page have higher ids and never shift a later page.
    pub next: Option<TaskId>,
}

/// One recorded step of a run, as [`Operator::run`] shows it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct StepView {
    /// `name#n`.
    pub key: StepKey,
    /// `executed` when the run's latest attempt ran it, `replayed` when an earlier attempt
    /// did and the latest replayed its result; `recorded` when the record says neither
    /// (written by a version without step timings).
    pub origin: &'static str,
    /// The attempt that ran it.
    pub attempt: Option<u32>,
    /// When it started.
    pub at: Option<crate::clock::Timestamp>,
    /// How long its body ran.
    pub duration_ms: Option<u64>,
    /// Its result's size as JSON, in bytes.
    pub size: usize,
    /// Where in the code it was called (`file:line:col`).
    pub site: String,
}

/// A failed attempt of a run, as [`Operator::run`] shows it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct AttemptView {
    /// The attempt (1 for the first).
    pub attempt: u32,
    /// Its error's code.
    pub code: String,
    /// Its error's message (unmasked: for operators).
    pub message: String,
    /// When it ended.
    pub at: Option<crate::clock::Timestamp>,
}

/// A run in full, as [`Operator::run`] returns it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RunDetail {
    /// Its status (with its children and what it waits for).
    #[serde(flatten)]
    pub status: TaskStatus,
    /// Its input.
    pub input: serde_json::Value,
    /// Its steps, in the order they ran (the engine's own records, `$…`, left out).
    pub steps: Vec<StepView>,
    /// Its failed attempts, in order (runs whose attempts failed before this history existed
    /// show none).
    pub attempts: Vec<AttemptView>,
}

/// Every owner's runs: list, inspect and steer them. Made by [`TaskFlow::operator`].
#[derive(Debug, Clone)]
pub struct Operator {
    flow: TaskFlow,
}

impl TaskFlow {
    /// Operator access to every owner's runs. Whoever holds it sees and steers any run:
    /// give it only to callers you have checked (the console does, with `ConsoleAccess`).
    #[must_use]
    pub fn operator(&self) -> Operator {
        Operator { flow: self.clone() }
    }
}

impl Operator {
    /// One page of runs, newest first: each key's current run, filtered.
    ///
    /// # Errors
    /// `Store` when the store cannot be read.
    pub async fn list(&self, filter: RunFilter) -> Result<RunPage, ControlError> {
        let inner = &self.flow.inner;
        let limit = filter.limit.unwrap_or(50).clamp(1, MAX_PAGE);
        let scan = Scan {
            owner: filter.owner,
            states: filter.states,
            task: filter.task,
            updated_before: None,
            // One more than the page: whether there is a next page.
            limit: Some(limit + 1),
            before: filter.before,
            current_only: true,
            key_prefix: filter.key_prefix,
        };
        let mut records = inner.store.scan(scan).await?;
        let more = records.len() > limit;
        records.truncate(limit);
        let next = more.then(|| records.last().map(|r| r.id)).flatten();
        let runs = inner.statuses(&records).await?;
        Ok(RunPage { runs, next })
    }

    /// How many runs are in each state (every run the store holds, not only current ones).
    ///
    /// # Errors
    /// `Store` when the store cannot be read.
    pub async fn counts(&self) -> Result<BTreeMap<TaskState, u64>, ControlError> {
        Ok(self
            .flow
            .inner
            .store
            .count_by_state()
            .await?
            .into_iter()
            .collect())
    }

    /// The key's current run in full: status, input, children, steps.
    ///
    /// # Errors
    /// `NotFound` for an unknown key; `Store`.
    pub async fn run(&self, ik: &IdempotencyKey) -> Result<RunDetail, ControlError> {
        let inner = &self.flow.inner;
        let (record, last) = inner.owned_run(&Scope::operator(), ik).await?;
        let mut status = status_of(&record, last);
        status.children = inner.children_status(record.id).await?;
        let recorded = inner.store.steps(record.id).await?;
        let attempt_prefix = format!("{ATTEMPT_STEP}#");
        let mut attempts = recorded
            .iter()
            .filter(|(key, _)| key.as_str().starts_with(&attempt_prefix))
            .map(|(key, step)| AttemptView {
                attempt: key.index().unwrap_or(0),
                code: step.value["code"].as_str().unwrap_or_default().to_owned(),
                message: step.value["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                at: serde_json::from_value(step.value["at"].clone()).ok(),
            })
            .collect::<Vec<_>>();
        attempts.sort_by_key(|a| a.attempt);
        let mut steps = recorded
            .into_iter()
            .filter(|(key, _)| !key.as_str().starts_with('$'))
            .map(|(key, step)| {
                let origin = match step.timing.as_ref().map(|t| t.attempt) {
                    Some(a) if a == record.attempt => "executed",
                    Some(_) => "replayed",
                    None => "recorded",
                };
                StepView {
                    key,
                    origin,
                    attempt: step.timing.as_ref().map(|t| t.attempt),
                    at: step.timing.as_ref().map(|t| t.at),
                    duration_ms: step.timing.as_ref().map(|t| t.duration_ms),
                    size: serde_json::to_vec(&step.value).map_or(0, |v| v.len()),
                    site: step.site,
                }
            })
            .collect::<Vec<_>>();
        // In the order they ran (records without a time last, by key).
        steps.sort_by(|a, b| {
            (a.at.is_none(), a.at, a.key.as_str()).cmp(&(b.at.is_none(), b.at, b.key.as_str()))
        });
        Ok(RunDetail {
            status,
            input: record.input,
            steps,
            attempts,
        })
    }

    /// One step's recorded result.
    ///
    /// # Errors
    /// `NotFound` for an unknown key or step; `Store`.
    pub async fn step_value(
        &self,
        ik: &IdempotencyKey,
        step: &str,
    ) -> Result<serde_json::Value, ControlError> {
        let inner = &self.flow.inner;
        let (record, _) = inner.owned_run(&Scope::operator(), ik).await?;
        if step.starts_with('$') {
            return Err(ControlError::NotFound);
        }
        inner
            .store
            .steps_with_prefix(record.id, step)
            .await?
            .into_iter()
            .find(|(key, _)| key.as_str() == step)
            .map(|(_, s)| s.value)
            .ok_or(ControlError::NotFound)
    }

    /// The run's events from `from`, then live, as for its owner.
    ///
    /// # Errors
    /// `NotFound` for an unknown key; `Store`.
    pub async fn subscribe(
        &self,
        ik: &IdempotencyKey,
        from: SubscribeFrom,
    ) -> Result<EventSubscription, ControlError> {
        self.flow
            .inner
            .subscribe(&Scope::operator(), ik, from)
            .await
    }

    /// Stops (suspends) any owner's run, as its owner could.
    ///
    /// # Errors
    /// As [`TaskFlow::stop`].
    pub async fn stop(
        &self,
        ik: &IdempotencyKey,
        reason: Option<&str>,
    ) -> Result<TaskStatus, ControlError> {
        self.control(ik, Action::Stop, reason).await
    }

    /// Resumes any owner's suspended run.
    ///
    /// # Errors
    /// As [`TaskFlow::resume`].
    pub async fn resume(&self, ik: &IdempotencyKey) -> Result<TaskStatus, ControlError> {
        self.control(ik, Action::Resume, None).await
    }

    /// Cancels any owner's run.
    ///
    /// # Errors
    /// As [`TaskFlow::cancel`].
    pub async fn cancel(
        &self,
        ik: &IdempotencyKey,
        reason: Option<&str>,
    ) -> Result<TaskStatus, ControlError> {
        self.control(ik, Action::Cancel, reason).await
    }

    /// Sends a signal to any owner's run, stored once per `key` (as
    /// [`TaskFlow::signal_once`]).
    ///
    /// # Errors
    /// As [`TaskFlow::signal_once`].
    pub async fn signal_once(
        &self,
        ik: &IdempotencyKey,
        name: &str,
        payload: serde_json::Value,
        key: &str,
    ) -> Result<(), ControlError> {
        self.flow
            .inner
            .signal(&Scope::operator(), ik, name, payload, Some(key))
            .await
    }

    async fn control(
        &self,
        ik: &IdempotencyKey,
        action: Action,
        reason: Option<&str>,
    ) -> Result<TaskStatus, ControlError> {
        self.flow
            .inner
            .control(&Scope::operator(), ik, action, reason)
            .await
    }
}
