//! The one task that writes: group commit over one connection.
//!
//! Whatever is queued when the previous statement returns goes into the next one: a single
//! `apply_group` call, so one round trip and one transaction commit many batches. A lone
//! writer is committed at once (no linger timer).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Statement};

use super::Shared;
use super::encode::{GroupArgs, outcomes};
use super::migrate::reason;
use crate::error::StoreError;
use crate::ids::Seq;
use crate::status::StoredEvent;
use crate::store::state::{Pending, StoreState};
use crate::store::{Committed, Write, WriteBatch};

/// Upper bound on batches per statement, so one huge group cannot starve fan-out.
const MAX_GROUP: usize = 1024;
/// How often a group that lost a deadlock or serialisation race is tried again (the
/// statement rolled back whole, so trying again is safe).
const RACE_RETRIES: u32 = 8;

pub(super) enum Request {
    /// A batch and where its outcome goes.
    Write(Pending),
    Close {
        reply: oneshot::Sender<()>,
    },
}

pub(super) struct Committer {
    pub(super) shared: Arc<Shared>,
    pub(super) client: Client,
    pub(super) apply: Statement,
    /// The common case, a lone fenced step: one `INSERT ... SELECT ... FOR UPDATE` that writes
    /// nothing unless the run's epoch is the writer's ($1 task, $2 key, $3 record, $4 epoch).
    pub(super) lone_step: Statement,
    /// A group of one run's events only (queued emits), every batch fenced by the run's
    /// epoch: `event_run.sql`, one statement that fences, numbers, writes and notifies them.
    pub(super) event_run: Statement,
    /// The schema's notification channel.
    pub(super) channel: String,
    pub(super) receiver: mpsc::UnboundedReceiver<Request>,
}

impl Committer {
    pub(super) async fn run(mut self) {
        while let Some(request) = self.receiver.recv().await {
            // A simulated kill writes nothing more, as a killed process would not: the writers
            // waiting on it (a failed attempt's settlement, queued emits) never land.
            if self.shared.state.is_crashed() {
                return;
            }
            let first = match request {
                Request::Write(first) => first,
                Request::Close { reply } => {
                    let _ = reply.send(());
                    return;
                }
            };
            let mut group = vec![first];
            let mut close = None;
            while group.len() < MAX_GROUP {
                match self.receiver.try_recv() {
                    Ok(Request::Write(next)) => group.push(next),
                    Ok(Request::Close { reply }) => {
                        close = Some(reply);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group).await;
            if let Some(reply) = close {
                let _ = reply.send(());
                return;
            }
        }
    }

    async fn commit_group(&self, group: Vec<Pending>) {
        let state = &self.shared.state;
        if state.crash_before_write() {
            return;
        }
        if state.is_failed() {
            StoreState::refuse(group, || StoreError::FailStopped);
            return;
        }
        let batches: Vec<&WriteBatch> = group.iter().map(|p| &p.batch).collect();
        let started = Instant::now();
        let decoded = if let Some(step) = lone_step(&batches) {
            self.commit_lone_step(step).await.map(|one| vec![one])
        } else if let Some(events) = event_run(&batches) {
            self.commit_event_run(&events, &batches).await
        } else {
            let args = match GroupArgs::new(batches.iter().copied()) {
                Ok(args) => args,
                Err(e) => {
                    let message = e.to_string();
                    StoreState::refuse(group, || StoreError::Corrupt(message.clone()));
                    return;
                }
            };
            self.apply_with_retries(&args).await.and_then(|text| {
                outcomes(&text, &batches).map_err(|e| {
                    tracing::error!(error = %e, "the PostgreSQL store's answer did not decode");
                    e
                })
            })
        };
        match decoded {
            Ok(outcomes) => state.answer(group, outcomes, started),
            Err(error) => {
                state.fail_stop(&error);
                let message = error.to_string();
                StoreState::refuse(group, || {
                    StoreError::io(std::io::Error::other(message.clone()))
                });
            }
        }
    }

    /// A lone fenced step in one statement: `Done` when written, `Fenced` when the epoch
    /// moved on (or the run is gone).
    async fn commit_lone_step(
        &self,
        step: LoneStep<'_>,
    ) -> Result<Result<Vec<Committed>, StoreError>, StoreError> {
        let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let record = std::str::from_utf8(step.json)
            .map_err(|e| StoreError::Corrupt(format!("step record is not UTF-8: {e}")))?;
        let (task, epoch) = (to_i64(step.task), to_i64(step.epoch));
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&task, &step.key, &record, &epoch];
        let mut tries = 0;
        loop {
            match self.client.execute(&self.lone_step, &params).await {
                Ok(1) => return Ok(Ok(vec![Committed::Done])),
                Ok(_) => return Ok(Err(StoreError::Fenced)),
                Err(e) if tries < RACE_RETRIES && is_race(&e) => tries += 1,
                Err(e) => return Err(StoreError::io(std::io::Error::other(reason(&e)))),
            }
        }
    }

    /// A group of one run's events in one statement: each batch's events with their seqs,
    /// or every batch `Fenced` when the run's epoch moved on (or the run is gone).
    async fn commit_event_run(
        &self,
        events: &EventRun<'_>,
        batches: &[&WriteBatch],
    ) -> Result<Vec<Result<Vec<Committed>, StoreError>>, StoreError> {
        let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let (task, epoch) = (to_i64(events.task), to_i64(events.epoch));
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
            &task,
            &epoch,
            &events.ik,
            &events.names,
            &events.data,
            &self.channel,
            &self.shared.owner,
        ];
        let mut tries = 0;
        let last = loop {
            match self.client.query_one(&self.event_run, &params).await {
                Ok(row) => {
                    break row
                        .try_get::<_, Option<i64>>(0)
                        .map_err(|e| StoreError::Corrupt(format!("event commit: {e}")))?;
                }
                Err(e) if tries < RACE_RETRIES && is_race(&e) => tries += 1,
                Err(e) => return Err(StoreError::io(std::io::Error::other(reason(&e)))),
            }
        };
        let Some(last) = last.and_then(|l| u64::try_from(l).ok()) else {
            return Ok(batches.iter().map(|_| Err(StoreError::Fenced)).collect());
        };
        let count = u64::try_from(events.names.len()).unwrap_or(u64::MAX);
        let mut seq = last.saturating_sub(count);
        Ok(batches
            .iter()
            .map(|batch| {
                Ok(batch
                    .writes
                    .iter()
                    .filter_map(|write| match write {
                        Write::Event { name, data, .. } => {
                            seq += 1;
                            Some(Committed::Event(StoredEvent {
                                seq: Seq::new(seq),
                                name: name.clone(),
                                data: data.clone(),
                            }))
                        }
                        _ => None,
                    })
                    .collect())
            })
            .collect())
    }

    /// One `apply_group` call; a deadlock or serialisation failure (the whole statement
    /// rolled back) is tried again, anything else is the store's failure.
    async fn apply_with_retries(&self, args: &GroupArgs) -> Result<String, StoreError> {
        let mut tries = 0;
        loop {
            let lease_ms = self.shared.lease_ms;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                [&args.g, &args.d, &self.shared.owner, &lease_ms];
            match self.client.query_one(&self.apply, &params).await {
                Ok(row) => {
                    return row
                        .try_get::<_, String>(0)
                        .map_err(|e| StoreError::Corrupt(format!("apply_group: {e}")));
                }
                Err(e) if tries < RACE_RETRIES && is_race(&e) => {
                    tries += 1;
                    tracing::debug!(error = %reason(&e), tries, "group commit lost a race; trying again");
                }
                Err(e) => return Err(StoreError::io(std::io::Error::other(reason(&e)))),
            }
        }
    }
}

/// A deadlock or serialisation failure: the statement rolled back whole; try it again.
fn is_race(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(&SqlState::T_R_DEADLOCK_DETECTED | &SqlState::T_R_SERIALIZATION_FAILURE)
    )
}

/// The parts of a group that holds only events of one run and key, every batch fenced by
/// that run's epoch (what queued emits make).
struct EventRun<'a> {
    task: u64,
    epoch: u64,
    ik: &'a str,
    names: Vec<&'a str>,
    /// The payloads as JSON texts (a text cast to `json` keeps a `\u0000` in a string).
    data: Vec<String>,
}

fn event_run<'a>(batches: &[&'a WriteBatch]) -> Option<EventRun<'a>> {
    let fence = batches.first()?.fence?;
    let mut run = EventRun {
        task: fence.task.0,
        epoch: fence.epoch.0,
        ik: "",
        names: Vec::new(),
        data: Vec::new(),
    };
    for batch in batches {
        if batch.fence != Some(fence) {
            return None;
        }
        for write in &batch.writes {
            let Write::Event {
                ik,
                task,
                name,
                data,
            } = write
            else {
                return None;
            };
            if *task != fence.task || !(run.names.is_empty() || run.ik == ik.as_str()) {
                return None;
            }
            run.ik = ik.as_str();
            run.names.push(name.as_str());
            run.data.push(serde_json::to_string(data).ok()?);
        }
    }
    (!run.names.is_empty()).then_some(run)
}

/// The parts of a group that is one fenced batch of one step of the fenced run.
struct LoneStep<'a> {
    task: u64,
    epoch: u64,
    key: &'a str,
    json: &'a [u8],
}

fn lone_step<'a>(batches: &[&'a WriteBatch]) -> Option<LoneStep<'a>> {
    let [batch] = batches else { return None };
    let fence = batch.fence?;
    match batch.writes.as_slice() {
        [Write::Step { task, key, json }] if *task == fence.task => Some(LoneStep {
            task: task.0,
            epoch: fence.epoch.0,
            key: key.as_str(),
            json,
        }),
        _ => None,
    }
}
