//! A run's driver: admission slot held, attempts run one after another, outcomes settled.

use std::sync::Arc;

use tokio::sync::watch;
use tracing::Instrument;

use super::Inner;
use super::admission::Ticket;
use super::attempt::{AttemptStart, AttemptState};
use super::operator::ATTEMPT_STEP;
use super::registry::Registered;
use super::runs::Generation;
use crate::clock::Timestamp;
use crate::error::{StoreError, TaskError};
use crate::ids::StepKey;
use crate::ids::{Epoch, Seq};
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::status::{StoredEvent, TaskState};
use crate::store::{Committed, StepRecord, TaskPatch, TaskRecord, Write};

/// How an attempt ended.
enum Attempt {
    /// The handler returned (or panicked).
    Finished(Result<serde_json::Value, TaskError>),
    /// Stopped, cancelled or shut down before it returned; nothing to settle.
    Stopped,
    /// The handler parked the run in a durable wait (committed); the timer wakes it at this
    /// time (a signal wait has none: the signal wakes it).
    Parked(Option<Timestamp>),
}

/// Starts a driver for a run that holds an admission slot.
pub(super) fn spawn(inner: Arc<Inner>, ticket: Ticket) {
    let (generation, stop_rx) = inner.runs.register(ticket.id);
    let span = tracing::info_span!("run", task_id = %ticket.id);
    let id = ticket.id;
    let task = tokio::spawn(drive(inner.clone(), ticket, generation, stop_rx).instrument(span));
    inner.runs.set_driver(id, generation, task.abort_handle());
}

async fn drive(
    inner: Arc<Inner>,
    ticket: Ticket,
    generation: Generation,
    mut stop: watch::Receiver<bool>,
) {
    let mut first = true;
    loop {
        if *stop.borrow() {
            break;
        }
        let record = match inner.store.task(ticket.id).await {
            Ok(Some(r)) if matches!(r.status, TaskState::Created | TaskState::Running) => r,
            _ => break,
        };
        let Some(registered) = inner.registry.get(&record.name) else {
            break;
        };
        // A run another version of the task created (a resume, a wake-up) never runs here.
        // Checked when the driver takes the run: its retries run this same code, which only
        // adds steps it has, so they need no second read of the log.
        let checked = if first {
            inner.incompatibility(&record).await
        } else {
            Ok(None)
        };
        match checked {
            Ok(None) => {}
            Ok(Some(why)) => {
                if let Err(e) = inner.set_aside(&record, why).await {
                    tracing::warn!(error = %e, "could not set aside a run this code cannot resume");
                }
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the run's steps");
                break;
            }
        }
        // A parked run woken at its time is not a recovery: nothing was interrupted.
        let is_recovery = first && record.status == TaskState::Running && record.waiting.is_none();
        first = false;
        if let Some(at) = record.next_attempt_at {
            let wait = at.since(inner.now());
            if !wait.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => break,
                }
            }
        }
        let user = inner.runs.live_user(record.id);
        if record.on_behalf_of && user.is_none() {
            if let Err(e) = inner.suspend_run(&record, "user_context_required").await {
                tracing::warn!(error = %e, "could not suspend a run without its user context");
            }
            break;
        }
        let epoch = match begin_attempt(&inner, &record).await {
            Ok(epoch) => epoch,
            // Someone changed the run meanwhile: read it again.
            Err(StoreError::Fenced) if !inner.store.is_failed() => continue,
            Err(StoreError::ClaimedElsewhere) => {
                tracing::debug!("another process claimed the run first; it runs there");
                break;
            }
            // Every slot across the processes is taken: wait for one (the local slot stays
            // held, so this process admits no more than it could run).
            Err(StoreError::AtCapacity) => {
                tokio::select! {
                    () = tokio::time::sleep(capacity_backoff()) => continue,
                    _ = stop.changed() => break,
                }
            }
            Err(_) => break,
        };
        let attempt = record.attempt + 1;
        let outcome = run_attempt(
            &inner,
            registered,
            &record,
            epoch,
            attempt,
            is_recovery,
            user,
            &mut stop,
            generation,
        )
        .await;
        match outcome {
            Attempt::Stopped => break,
            Attempt::Parked(wake_at) => {
                // The slot is freed as the driver exits; the timer admits the run again.
                if let Some(at) = wake_at {
                    inner.timers.wake_at(
                        at,
                        Ticket {
                            id: record.id,
                            owner: record.owner.clone(),
                        },
                    );
                }
                break;
            }
            Attempt::Finished(result) => {
                if !settle(&inner, &record, epoch, attempt, result).await {
                    break;
                }
            }
        }
    }
    inner.driver_finished(&ticket, generation);
}

/// How long an attempt start waits before asking again for a slot across processes: 50 to
/// 150 ms, spread so that waiting processes do not ask in step.
fn capacity_backoff() -> std::time::Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::time::Duration::from_millis(50 + u64::from(nanos % 100))
}

/// Commits the start of an attempt, claiming the run for this process; returns its epoch.
async fn begin_attempt(inner: &Inner, record: &TaskRecord) -> Result<Epoch, StoreError> {
    let mut patch = TaskPatch::at(inner.now());
    patch.status = Some(TaskState::Running);
    patch.attempt = Some(record.attempt + 1);
    patch.next_attempt_at = Some(None);
    patch.waiting = Some(None);
    patch.bump_epoch = true;
    patch.heartbeat = true;
    let limits = inner.config.limits;
    patch.claim = Some(crate::store::Claim {
        max_running: limits.global_concurrency,
        max_running_per_user: limits.user_concurrency,
    });
    match inner
        .commit_fenced(record.id, &record.ik, record.epoch, patch, None)
        .await
    {
        Ok(c) => match c.first() {
            Some(Committed::Epoch(e)) => Ok(*e),
            _ => Err(StoreError::Corrupt(
                "the store did not report the attempt's epoch".into(),
            )),
        },
        Err(e) => {
            if !matches!(
                e,
                StoreError::Fenced | StoreError::ClaimedElsewhere | StoreError::AtCapacity
            ) {
                tracing::error!(error = %e, "could not start an attempt");
            }
            Err(e)
        }
    }
}

async fn previous_user_events(
    inner: &Inner,
    record: &TaskRecord,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut out = Vec::new();
    let mut cursor = Seq(record.first_seq.0.saturating_sub(1));
    loop {
        let chunk = inner.store.events(&record.ik, cursor, 1024).await?;
        let Some(last) = chunk.last() else { break };
        cursor = last.seq;
        out.extend(chunk.into_iter().filter(|e| !e.is_lifecycle()));
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
async fn run_attempt(
    inner: &Arc<Inner>,
    registered: &Registered,
    record: &TaskRecord,
    epoch: Epoch,
    attempt: u32,
    is_recovery: bool,
    user: Option<crate::identity::UserContext>,
    stop: &mut watch::Receiver<bool>,
    generation: Generation,
) -> Attempt {
    let loaded = async {
        let steps = inner.store.steps(record.id).await?;
        let previous = previous_user_events(inner, record).await?;
        Ok::<_, StoreError>((steps, previous))
    }
    .await;
    let (steps, previous) = match loaded {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "could not load the run's log");
            return Attempt::Stopped;
        }
    };
    let state = Arc::new(AttemptState::new(
        inner.clone(),
        AttemptStart {
            task_name: registered.name,
            task_id: record.id,
            ik: record.ik.clone(),
            epoch,
            attempt,
            is_recovery,
            owner: record.owner.clone(),
            user,
            previous_events: previous,
            steps,
            stop: stop.clone(),
            generation,
        },
    ));
    let span = tracing::info_span!("attempt", task = registered.name, attempt, is_recovery);
    let mut parked = state.parked();
    let mut handler = tokio::spawn((registered.run)(state, record.input.clone()).instrument(span));
    inner
        .runs
        .set_handler(record.id, generation, handler.abort_handle());
    let beat_every = inner.config.heartbeat_interval;
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + beat_every, beat_every);
    loop {
        tokio::select! {
            joined = &mut handler => return after_stop_check(stop, outcome(joined)),
            Some(until) = async { parked.wait_for(Option::is_some).await.ok().and_then(|at| *at) } => {
                // The park is committed and the handler waits forever: drop it.
                handler.abort();
                return Attempt::Parked(until);
            }
            _ = beat.tick() => {
                if heartbeat(inner, record, epoch).await.is_err() {
                    // Fenced: the run was stopped, or (a shared store) another process took it
                    // over after this one missed its lease. Either way this attempt is over.
                    inner.runs.signal_stop_of(record.id, generation);
                }
            }
            _ = stop.changed() => break,
        }
    }
    // Stopped: give the handler the grace period to return, then drop it.
    match tokio::time::timeout(inner.config.stop_grace, &mut handler).await {
        Ok(joined) => after_stop_check(stop, outcome(joined)),
        Err(_) => {
            handler.abort();
            tracing::info!("handler ignored the stop signal; dropped after the grace period");
            Attempt::Stopped
        }
    }
}

/// Once a stop fired, a success still settles (the fence decides whether it may), but an
/// error is the stop itself (the handler reacting to `cancelled()` or a fenced write) and
/// must not use up an attempt. The handler may finish at the same moment the stop arrives,
/// so this is checked whichever event the driver saw first.
fn after_stop_check(
    stop: &watch::Receiver<bool>,
    result: Result<serde_json::Value, TaskError>,
) -> Attempt {
    match result {
        Err(_) if *stop.borrow() => Attempt::Stopped,
        result => Attempt::Finished(result),
    }
}

fn outcome(
    joined: Result<Result<serde_json::Value, TaskError>, tokio::task::JoinError>,
) -> Result<serde_json::Value, TaskError> {
    match joined {
        Ok(result) => result,
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the handler panicked".to_owned());
            Err(TaskError::new(message).with_code("panicked"))
        }
        Err(_) => Err(TaskError::stopped("the handler was dropped")),
    }
}

/// Records a heartbeat; `Err` when the attempt was fenced off.
async fn heartbeat(inner: &Inner, record: &TaskRecord, epoch: Epoch) -> Result<(), ()> {
    let mut patch = TaskPatch::at(inner.now());
    patch.heartbeat = true;
    match inner
        .commit_fenced(record.id, &record.ik, epoch, patch, None)
        .await
    {
        Ok(_) => Ok(()),
        Err(StoreError::Fenced) => Err(()),
        Err(e) => {
            tracing::warn!(error = %e, "heartbeat failed");
            Ok(())
        }
    }
}

/// Commits an attempt's outcome. Returns `true` when a retry is scheduled.
async fn settle(
    inner: &Arc<Inner>,
    record: &TaskRecord,
    epoch: Epoch,
    attempt: u32,
    result: Result<serde_json::Value, TaskError>,
) -> bool {
    let now = inner.now();
    let mut patch = TaskPatch::at(now);
    let mut extra = Vec::new();
    let (event, retry) = match result {
        Ok(output) => {
            patch.status = Some(TaskState::Completed);
            patch.output = Some(output.clone());
            (Some(Lifecycle::Completed { output }), false)
        }
        Err(error) if error.is_stop() => {
            // The attempt was fenced off by a stop or cancel that already committed its state.
            return false;
        }
        Err(error) => {
            let failed = record.failed_attempts + 1;
            patch.failed_attempts = Some(failed);
            extra.extend(attempt_record(record, attempt, &error, now));
            if error.is_permanent() || failed >= record.max_attempts {
                tracing::warn!(
                    code = error.code(),
                    error = error.message(),
                    failed,
                    "run failed"
                );
                patch.status = Some(TaskState::Failed);
                let record = error.to_record();
                let event = Lifecycle::failed(&record);
                patch.error = Some(record);
                (Some(event), false)
            } else {
                let backoff =
                    retry_backoff(inner.config.retry_base, inner.config.retry_cap, failed);
                tracing::info!(
                    code = error.code(),
                    error = error.message(),
                    failed,
                    ?backoff,
                    "attempt failed; retrying"
                );
                patch.next_attempt_at = Some(Some(now.plus(backoff)));
                (None, true)
            }
        }
    };
    let status = patch.status;
    match inner
        .commit_fenced_with(record.id, &record.ik, epoch, patch, event, extra)
        .await
    {
        Ok(_) => {
            match status {
                Some(TaskState::Completed) => Metrics::inc(&inner.metrics.tasks_completed),
                Some(TaskState::Failed) => Metrics::inc(&inner.metrics.tasks_failed),
                _ => {}
            }
            if status.is_some() {
                inner.runs.forget_user(record.id);
                inner.wake_parent(record);
            }
            retry
        }
        Err(StoreError::Fenced) => false,
        Err(e) => {
            tracing::error!(error = %e, "could not record the attempt's outcome");
            false
        }
    }
}

/// The record of a failed attempt (`$attempt#{n}`, n = the attempt): its error and when, for
/// the operator console's attempt history. Written with the outcome, in the same commit.
fn attempt_record(
    record: &TaskRecord,
    attempt: u32,
    error: &TaskError,
    now: Timestamp,
) -> Option<Write> {
    let value = serde_json::json!({
        "code": error.code(),
        "message": error.message(),
        "at": now,
    });
    let key = StepKey::new(ATTEMPT_STEP, attempt);
    let json = StepRecord::encode(&key, value.to_string().as_bytes(), "engine").ok()?;
    Some(Write::Step {
        task: record.id,
        key,
        json,
    })
}

/// The wait before the next attempt after `failed` failed attempts: `base × 2^(failed − 1)`,
/// capped at `cap`.
fn retry_backoff(
    base: std::time::Duration,
    cap: std::time::Duration,
    failed: u32,
) -> std::time::Duration {
    let exp = failed.saturating_sub(1).min(16);
    base.saturating_mul(1 << exp).min(cap)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::retry_backoff;

    #[test]
    fn backoff_doubles_from_one_second_and_stops_at_thirty() {
        let (base, cap) = (Duration::from_secs(1), Duration::from_secs(30));
        let waits: Vec<u64> = (1..=8)
            .map(|failed| retry_backoff(base, cap, failed).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(retry_backoff(base, cap, u32::MAX), cap, "no overflow");
    }
}
