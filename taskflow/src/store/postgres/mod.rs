//! The PostgreSQL store (feature `postgres`): taskflow's log in tables of one schema, so
//! several processes can share it (SPEC §7).
//!
//! Writes go through one committer task on a dedicated connection: every batch queued while
//! the previous statement ran is applied by one call of the schema's `apply_group` function,
//! one round trip and one transaction for the whole group (fencing, sequence numbers and the
//! key's current run are decided inside it, under row locks). Reads use a second connection,
//! so they never wait behind commits.

mod committer;
mod config;
mod connect;
mod encode;
mod listener;
mod migrate;

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use self::committer::Request;
#[cfg(feature = "test-util")]
pub(crate) use self::config::describe;
pub use self::config::{DEFAULT_SCHEMA, DEFAULT_STALE_THRESHOLD, PgConfig};
use self::encode::RUN_COLUMNS;
pub(crate) use self::migrate::reason;
use super::state::StoreState;
use super::{
    PendingCommit, Scan, StepRecord, Store, StoreFuture, StoreHooks, TaskRecord, WriteBatch,
};
use crate::error::StoreError;
use crate::ids::{IdempotencyKey, Seq, StepKey, TaskId};
use crate::status::{StoredEvent, TaskState};
use crate::sync::lock;

/// State shared by the store handle, its committer and its listener.
#[derive(Debug)]
pub(crate) struct Shared {
    /// This process's owner id in leases (unique per opened store).
    pub(crate) owner: String,
    /// How long a lease holds, in milliseconds: the stale threshold.
    pub(crate) lease_ms: i64,
    pub(crate) state: StoreState,
}

impl Shared {
    /// The engine's hooks, or hooks that report to nobody before `attach`.
    pub(crate) fn hooks(&self) -> StoreHooks {
        self.state.hooks()
    }
}

/// Prepared read statements.
#[derive(Debug)]
struct Reads {
    task: Statement,
    current_run: Statement,
    events: Statement,
    steps: Statement,
    steps_with_prefix: Statement,
    claim: Statement,
    claim_queued: Statement,
    renew: Statement,
    notify_runs: Statement,
    release: Statement,
    release_runs: Statement,
    streams_set: Statement,
    streams_drop: Statement,
    streams_elsewhere: Statement,
    streams_seen: Statement,
}

/// taskflow's log on PostgreSQL. [`TaskFlowBuilder::postgres`](crate::TaskFlowBuilder::postgres)
/// connects one; connect it yourself to hand it to
/// [`TaskFlowBuilder::store`](crate::TaskFlowBuilder::store).
pub struct PgStore {
    config: PgConfig,
    schema: String,
    reader: Client,
    reads: Reads,
    shared: Arc<Shared>,
    sender: Mutex<Option<mpsc::UnboundedSender<Request>>>,
    /// The committer and the two connections' drivers.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("config", &self.config)
            .field("failed", &self.shared.state.is_failed())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Arms a crash at an exact commit (the crash matrix).
    #[cfg(feature = "test-util")]
    pub(crate) fn arm_crash_at(&self, trigger: Arc<crate::testing::CrashAtCommit>) {
        self.shared.state.arm_crash_at(trigger);
    }

    /// This process's id in the store's leases and notifications (`p<pid>-<start time>`);
    /// its connections are named `taskflow committer|reader|listener <id>` in
    /// `pg_stat_activity`.
    #[must_use]
    pub fn lease_owner(&self) -> &str {
        &self.shared.owner
    }

    /// The configuration this store connected with.
    #[must_use]
    pub fn config(&self) -> &PgConfig {
        &self.config
    }

    fn send(&self, request: Request) -> Result<(), StoreError> {
        let guard = lock(&self.sender);
        let sender = guard.as_ref().ok_or(StoreError::Closed)?;
        sender.send(request).map_err(|_| StoreError::Closed)
    }

    /// Runs one claiming statement; returns the claimed runs oldest first and notifies their
    /// former holders, so one that is still alive stops at once.
    async fn claim_with(
        &self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<TaskRecord>, StoreError> {
        self.check_open()?;
        if self.shared.state.is_failed() {
            return Err(StoreError::FailStopped);
        }
        let rows = self
            .reader
            .query(statement, params)
            .await
            .map_err(|e| db(&e))?;
        let mut runs = match rows
            .iter()
            .map(encode::record)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(runs) => runs,
            Err(e) => {
                // Give back what was just claimed: a run this process cannot read must not
                // stay leased to it (renewed, never admitted) until it restarts.
                let ids: Vec<i64> = rows.iter().filter_map(|r| r.try_get(0).ok()).collect();
                if let Err(release) = self.reader.execute(&self.reads.release_runs, &[&ids]).await {
                    tracing::warn!(error = %reason(&release), "could not give up runs that do not decode");
                }
                return Err(e);
            }
        };
        runs.sort_by_key(|r| r.id);
        if !runs.is_empty() {
            let ids: Vec<i64> = runs.iter().map(|r| to_i64(r.id.0)).collect();
            if let Err(e) = self
                .reader
                .query(&self.reads.notify_runs, &[&self.shared.owner, &ids])
                .await
            {
                // The claim holds by its epoch; the former holder then stops at its next
                // write or heartbeat instead of at once.
                tracing::warn!(error = %reason(&e), "could not notify the claim of runs");
            }
        }
        Ok(runs)
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.shared.state.is_crashed() {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    fn stop_tasks(&self) {
        lock(&self.sender).take();
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

fn db(e: &tokio_postgres::Error) -> StoreError {
    StoreError::io(std::io::Error::other(reason(e)))
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store for PgStore {
    fn attach(&self, hooks: StoreHooks) {
        self.shared.state.attach(hooks);
    }

    fn enqueue(&self, batch: WriteBatch) -> PendingCommit {
        self.shared
            .state
            .enqueue(batch, |pending| self.send(Request::Write(pending)))
    }

    fn task(&self, id: TaskId) -> StoreFuture<'_, Option<TaskRecord>> {
        Box::pin(async move {
            self.check_open()?;
            let row = self
                .reader
                .query_opt(&self.reads.task, &[&to_i64(id.0)])
                .await
                .map_err(|e| db(&e))?;
            row.as_ref().map(encode::record).transpose()
        })
    }

    fn current_run<'a>(
        &'a self,
        ik: &'a IdempotencyKey,
    ) -> StoreFuture<'a, (Option<TaskRecord>, Seq)> {
        Box::pin(async move {
            self.check_open()?;
            let Some(row) = self
                .reader
                .query_opt(&self.reads.current_run, &[&ik.as_str()])
                .await
                .map_err(|e| db(&e))?
            else {
                return Ok((None, Seq::ZERO));
            };
            let last: i64 = row.get(0);
            let last = Seq(u64::try_from(last).unwrap_or(0));
            let id: Option<i64> = row.get(1);
            let record = match id {
                Some(_) => Some(encode::record_at(&row, 1)?),
                None => None,
            };
            Ok((record, last))
        })
    }

    fn events<'a>(
        &'a self,
        ik: &'a IdempotencyKey,
        after: Seq,
        limit: usize,
    ) -> StoreFuture<'a, Vec<StoredEvent>> {
        Box::pin(async move {
            self.check_open()?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = self
                .reader
                .query(
                    &self.reads.events,
                    &[&ik.as_str(), &to_i64(after.0), &limit],
                )
                .await
                .map_err(|e| db(&e))?;
            rows.iter().map(encode::event).collect()
        })
    }

    fn steps(&self, task: TaskId) -> StoreFuture<'_, Vec<(StepKey, StepRecord)>> {
        Box::pin(async move {
            self.check_open()?;
            let rows = self
                .reader
                .query(&self.reads.steps, &[&to_i64(task.0)])
                .await
                .map_err(|e| db(&e))?;
            step_rows(&rows)
        })
    }

    fn steps_with_prefix<'a>(
        &'a self,
        task: TaskId,
        prefix: &'a str,
    ) -> StoreFuture<'a, Vec<(StepKey, StepRecord)>> {
        Box::pin(async move {
            self.check_open()?;
            let rows = self
                .reader
                .query(&self.reads.steps_with_prefix, &[&to_i64(task.0), &prefix])
                .await
                .map_err(|e| db(&e))?;
            step_rows(&rows)
        })
    }

    fn scan(&self, scan: Scan) -> StoreFuture<'_, Vec<TaskRecord>> {
        Box::pin(async move {
            self.check_open()?;
            let mut conditions = Vec::new();
            let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
            let mut param = |value: Box<dyn ToSql + Sync + Send>| {
                params.push(value);
                params.len()
            };
            // `=` and `IS NULL` (not `IS NOT DISTINCT FROM`) so the owner index serves it.
            match &scan.owner {
                Some(Some(owner)) => {
                    let n = param(Box::new(owner.as_str().to_owned()));
                    conditions.push(format!("owner = ${n}"));
                }
                Some(None) => conditions.push("owner IS NULL".to_owned()),
                None => {}
            }
            if !scan.states.is_empty() {
                let states: Vec<String> =
                    scan.states.iter().map(|s| s.as_str().to_owned()).collect();
                let n = param(Box::new(states));
                conditions.push(format!("status = ANY(${n})"));
            }
            if let Some(task) = &scan.task {
                let n = param(Box::new(task.clone()));
                conditions.push(format!("name = ${n}"));
            }
            if let Some(below) = scan.before {
                let n = param(Box::new(to_i64(below.0)));
                conditions.push(format!("id < ${n}"));
            }
            if scan.current_only {
                conditions.push(format!(
                    "EXISTS (SELECT 1 FROM {}.keys k WHERE k.ik = runs.ik AND k.current_run = runs.id)",
                    self.schema
                ));
            }
            if let Some(prefix) = &scan.key_prefix {
                let n = param(Box::new(prefix.clone()));
                conditions.push(format!("starts_with(ik, ${n})"));
            }
            if let Some(before) = scan.updated_before {
                let n = param(Box::new(to_i64(before.as_millis())));
                conditions.push(format!("updated_at < ${n}"));
            }
            let mut sql = format!("SELECT {RUN_COLUMNS} FROM {}.runs", self.schema);
            if !conditions.is_empty() {
                sql.push_str(" WHERE ");
                sql.push_str(&conditions.join(" AND "));
            }
            sql.push_str(" ORDER BY id DESC");
            if let Some(limit) = scan.limit {
                let n = param(Box::new(i64::try_from(limit).unwrap_or(i64::MAX)));
                sql.push_str(&format!(" LIMIT ${n}"));
            }
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
            let rows = self.reader.query(&sql, &refs).await.map_err(|e| db(&e))?;
            rows.iter().map(encode::record).collect()
        })
    }

    fn count_by_state(&self) -> StoreFuture<'_, Vec<(TaskState, u64)>> {
        Box::pin(async move {
            self.check_open()?;
            let sql = format!(
                "SELECT status, count(*) FROM {}.runs GROUP BY status",
                self.schema
            );
            let rows = self.reader.query(&sql, &[]).await.map_err(|e| db(&e))?;
            let mut counts: Vec<(TaskState, u64)> =
                TaskState::ALL.iter().map(|s| (*s, 0)).collect();
            for row in rows {
                let status: String = row.get(0);
                let n: i64 = row.get(1);
                if let Some(c) = counts.iter_mut().find(|(s, _)| s.as_str() == status) {
                    c.1 = u64::try_from(n).unwrap_or(0);
                }
            }
            Ok(counts)
        })
    }

    fn compact(&self) -> StoreFuture<'_, ()> {
        // PostgreSQL's autovacuum gives deleted rows' space back; nothing to do here.
        Box::pin(async { Ok(()) })
    }

    fn is_failed(&self) -> bool {
        self.shared.state.is_failed()
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            if self.send(Request::Close { reply }).is_ok() {
                // The committer answers after committing every earlier write.
                let _ = answer.await;
            }
            // A clean stop (a deploy): give this process's runs up now, so another process
            // claims them at its next heartbeat instead of after the stale threshold.
            if !self.shared.state.is_failed()
                && let Err(e) = self
                    .reader
                    .execute(&self.reads.release, &[&self.shared.owner])
                    .await
            {
                tracing::warn!(error = %reason(&e), "could not give up this process's leases; other processes take its runs after the stale threshold");
            }
            self.stop_tasks();
            tracing::debug!("PostgreSQL store closed");
            Ok(())
        })
    }

    fn crash(&self) {
        self.shared.state.crash();
        self.stop_tasks();
    }

    fn lease(&self) -> Option<std::time::Duration> {
        Some(self.config.stale_after())
    }

    fn claim_interrupted<'a>(
        &'a self,
        limit: usize,
        tasks: &'a [&'a str],
    ) -> StoreFuture<'a, Vec<TaskRecord>> {
        Box::pin(async move {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            self.claim_with(
                &self.reads.claim,
                &[&self.shared.owner, &self.shared.lease_ms, &limit, &tasks],
            )
            .await
        })
    }

    fn claim_queued<'a>(
        &'a self,
        limit: usize,
        tasks: &'a [&'a str],
        waited: std::time::Duration,
    ) -> StoreFuture<'a, Vec<TaskRecord>> {
        Box::pin(async move {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let waited = i64::try_from(waited.as_millis()).unwrap_or(i64::MAX);
            self.claim_with(
                &self.reads.claim_queued,
                &[
                    &self.shared.owner,
                    &self.shared.lease_ms,
                    &limit,
                    &waited,
                    &tasks,
                ],
            )
            .await
        })
    }

    fn renew_leases(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.check_open()?;
            let renew_params: [&(dyn ToSql + Sync); 2] =
                [&self.shared.owner, &self.shared.lease_ms];
            let seen_params: [&(dyn ToSql + Sync); 1] = [&self.shared.owner];
            let renew = self.reader.execute(&self.reads.renew, &renew_params);
            let seen = self.reader.execute(&self.reads.streams_seen, &seen_params);
            let (renewed, seen) = tokio::join!(renew, seen);
            renewed.and(seen).map(drop).map_err(|e| db(&e))
        })
    }

    fn record_streams(&self, task: TaskId, open: usize) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.check_open()?;
            let id = to_i64(task.0);
            let done = if open == 0 {
                self.reader
                    .execute(&self.reads.streams_drop, &[&id, &self.shared.owner])
                    .await
            } else {
                let open = i32::try_from(open).unwrap_or(i32::MAX);
                self.reader
                    .execute(&self.reads.streams_set, &[&id, &self.shared.owner, &open])
                    .await
            };
            done.map(drop).map_err(|e| db(&e))
        })
    }

    fn streams_elsewhere(&self, task: TaskId) -> StoreFuture<'_, usize> {
        Box::pin(async move {
            self.check_open()?;
            let row = self
                .reader
                .query_one(
                    &self.reads.streams_elsewhere,
                    &[&to_i64(task.0), &self.shared.owner, &self.shared.lease_ms],
                )
                .await
                .map_err(|e| db(&e))?;
            let n: i64 = row.get(0);
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }
}

/// Step rows `(key, record::text)` as recorded steps.
fn step_rows(rows: &[tokio_postgres::Row]) -> Result<Vec<(StepKey, StepRecord)>, StoreError> {
    rows.iter()
        .map(|row| {
            let key: String = row.get(0);
            let text: String = row.get(1);
            let record: StepRecord = serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("step {key}: {e}")))?;
            Ok((StepKey::from_stored(key), record))
        })
        .collect()
}
