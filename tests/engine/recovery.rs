//! Recovery after a crash (the in-process crash hook), recovery_max_age, and in-flight state
//! that no longer fits the code.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use taskflow::prelude::*;
use taskflow::testing::TempStore;
use taskflow::{ManualClock, TaskState, Timestamp, WaitError};

use crate::support::*;

fn seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_in_process_crashes_lose_nothing_and_rerun_nothing() {
    // 100 steps, so that a slow machine finishing a few extra steps per life never lets the
    // run complete before the 20th crash.
    let dir = TempStore::new();
    let mut s = Script::new("rec-crash");
    s.steps = 100;
    s.step_sleep_ms = 10;
    let p = probe("rec-crash");
    let mut rng = seed() | 1;
    println!("crash test seed: {rng}");
    for life in 0..20 {
        let flow = fast_builder(&dir).build().await.unwrap();
        let executed = || {
            p.returned
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r.2 == taskflow::StepOrigin::Executed)
                .count()
        };
        let before = executed();
        let run = flow.start(scripted, s.clone()).await.unwrap();
        if run.attached != (life > 0) {
            let status = flow.status(&run.idempotency_key).await;
            panic!(
                "life {life}: attached = {}, the run: {status:?}",
                run.attached
            );
        }
        // At least one step committed in this life, then a random extra moment (< one step).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while executed() == before {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no progress in life {life}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_micros(next(&mut rng) % 8000)).await;
        let status = flow.status(&run.idempotency_key).await.unwrap();
        assert!(!status.status.is_terminal(), "finished before crash {life}");
        dir.crash(&flow).await;
    }
    let flow = fast_builder(&dir).build().await.unwrap();
    let run = flow.start(scripted, s).await.unwrap();
    let out = flow.wait(&run).await.unwrap();

    assert_eq!(p.reran_after_commit.load(Ordering::SeqCst), 0);
    // Recorded step results never changed: every return of step i gave the same value,
    // and the output holds it.
    let mut first: HashMap<u32, u64> = HashMap::new();
    for (i, v, _) in p.returned.lock().unwrap().iter() {
        assert_eq!(
            *first.entry(*i).or_insert(*v),
            *v,
            "step {i} changed its value"
        );
    }
    for (i, v) in out.values.iter().enumerate() {
        assert_eq!(first[&(i as u32)], *v);
    }
    // Events: 100 ticks, each once, in order, gapless, then completed.
    let events = all_events(&flow, &run.idempotency_key, SubscribeFrom::Start).await;
    assert_gapless(&events, 1);
    assert_eq!(events.len(), 101);
    for (i, e) in events[..100].iter().enumerate() {
        assert_eq!(e.name, "tick");
        assert_eq!(e.data["i"], i);
    }
    // Crashes do not use up attempts.
    let status = flow.status(&run.idempotency_key).await.unwrap();
    assert_eq!(status.failed_attempts, 0);
    assert_eq!(status.attempt, 21);
    assert_eq!(
        flow.metrics().tasks_recovered,
        1,
        "the last life recovers the run once"
    );
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_age_interrupted_run_fails_and_a_new_start_runs_fresh() {
    let dir = TempStore::new();
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let mut s = Script::new("rec-age");
    s.steps = 1;
    s.hold = true;
    let flow = fast_builder(&dir)
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let run = flow.start(scripted, s.clone()).await.unwrap();
    probe("rec-age").wait_progress(1).await;
    // Emits are pipelined: crash only once the tick is durable, so the log holds it.
    wait_last_seq(&flow, &run.idempotency_key, 1).await;
    dir.crash(&flow).await;

    clock.advance(Duration::from_secs(5 * 60 + 1));
    let flow = fast_builder(&dir)
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let status = flow.status(&run.idempotency_key).await.unwrap();
    assert_eq!(status.status, TaskState::Failed);
    assert_eq!(
        status.error.as_ref().unwrap().code,
        "recovery_max_age_exceeded"
    );
    let old_last = status.last_seq.get();
    assert_eq!(old_last, 2, "tick, then failed");

    probe("rec-age").release();
    let again = flow.start(scripted, s).await.unwrap();
    assert!(!again.attached);
    assert_ne!(again.task_id, run.task_id);
    let events = all_events(&flow, &again.idempotency_key, SubscribeFrom::Start).await;
    assert_eq!(events[0].seq.get(), old_last + 1);
    assert_gapless(&events, old_last + 1);
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_age_interrupted_run_is_recovered() {
    let dir = TempStore::new();
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let mut s = Script::new("rec-young");
    s.steps = 1;
    s.hold = true;
    let flow = fast_builder(&dir)
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let run = flow.start(scripted, s).await.unwrap();
    probe("rec-young").wait_progress(1).await;
    dir.crash(&flow).await;
    clock.advance(Duration::from_secs(4 * 60));
    let flow = fast_builder(&dir)
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    assert_eq!(flow.metrics().tasks_recovered, 1);
    probe("rec-young").release();
    flow.wait(&run).await.unwrap();
    assert_eq!(probe("rec-young").executions_of(0), 1);
    flow.shutdown().await.unwrap();
}

/// The same handler under another name, with auto_recover off.
#[task(auto_recover = false)]
async fn manual(ctx: TaskContext<Tick>, s: Script) -> Result<Out, TaskError> {
    scripted.run(ctx, s).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_recover_off_suspends_and_unregistered_tasks_are_left_alone() {
    let dir = TempStore::new();
    let mut s = Script::new("rec-manual");
    s.steps = 1;
    s.hold = true;
    let flow = fast_builder(&dir).register(manual).build().await.unwrap();
    let manual_run = flow.start(manual, s.clone()).await.unwrap();
    let mut other = s.clone();
    other.tag = "rec-unregistered".into();
    let scripted_run = flow.start(scripted, other).await.unwrap();
    probe("rec-manual").wait_progress(1).await;
    probe("rec-unregistered").wait_progress(1).await;
    dir.crash(&flow).await;

    // Reopen without `scripted` registered.
    let flow = dir.builder().register(manual).build().await.unwrap();
    let status = flow.status(&manual_run.idempotency_key).await.unwrap();
    assert_eq!(status.status, TaskState::Suspended);
    assert_eq!(
        status.suspended_reason.as_deref(),
        Some("auto_recover_disabled")
    );
    let untouched = flow.status(&scripted_run.idempotency_key).await.unwrap();
    assert_eq!(untouched.status, TaskState::Running);
    assert_eq!(untouched.attempt, 1, "nobody started it again");
    // redb: this process is the only one, so the run is reported as one it cannot execute.
    // PostgreSQL: it is not even claimed; it waits for a process that has the task (a
    // rolling deploy), so this one has nothing to report.
    let expected = if dir.kind().starts_with("redb") { 1 } else { 0 };
    assert_eq!(flow.metrics().tasks_unregistered, expected);
    flow.shutdown().await.unwrap();
}

#[derive(Debug, Serialize, Deserialize)]
struct V2Input {
    required_now: u64,
}

/// A task registered under `scripted` whose input no longer matches what was recorded; its
/// step is still `scripted`'s `work`, so the input is the one thing that does not fit.
#[task(name = "scripted")]
async fn scripted_v2(ctx: TaskContext<NoEvents>, input: V2Input) -> Result<u64, TaskError> {
    ctx.step(
        "work",
        || async move { Ok::<_, TaskError>(input.required_now) },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_in_flight_input_fails_with_incompatible_state() {
    let dir = TempStore::new();
    let mut s = Script::new("rec-incompatible");
    s.steps = 1;
    s.hold = true;
    let flow = fast_builder(&dir).build().await.unwrap();
    let run = flow.start(scripted, s).await.unwrap();
    probe("rec-incompatible").wait_progress(1).await;
    dir.crash(&flow).await;

    let flow = dir.builder().register(scripted_v2).build().await.unwrap();
    match flow.wait_json(&run.idempotency_key).await {
        Err(WaitError::Failed(e)) => {
            assert_eq!(e.code, "incompatible_state");
            assert!(e.message.contains("scripted"), "{}", e.message);
            assert!(e.message.contains("required_now"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    flow.shutdown().await.unwrap();
}

/// Holds until released; with `beat`, records a heartbeat once it holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct HoldIn {
    tag: String,
    beat: bool,
}

#[task(name = "never-recover", recovery_max_age = "0s")]
async fn never_recover(ctx: TaskContext<NoEvents>, input: HoldIn) -> Result<(), TaskError> {
    hold(ctx, input).await
}

#[task(name = "beating", recovery_max_age = "1m")]
async fn beating(ctx: TaskContext<NoEvents>, input: HoldIn) -> Result<(), TaskError> {
    hold(ctx, input).await
}

async fn hold(ctx: TaskContext<NoEvents>, input: HoldIn) -> Result<(), TaskError> {
    let p = probe(&input.tag);
    let mut beats = p.release.subscribe();
    p.progress.send_modify(|n| *n += 1);
    if input.beat {
        // The test advances the clock, then lets us beat once.
        let _ = beats.wait_for(|r| *r).await;
        ctx.heartbeat().await?;
        p.progress.send_modify(|n| *n += 1);
    }
    ctx.cancelled().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_max_age_zero_fails_an_interrupted_run_at_once() {
    let dir = TempStore::new();
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let build = || {
        fast_builder(&dir)
            .register(never_recover)
            .clock(clock.clone())
            .build()
    };
    let flow = build().await.unwrap();
    let input = HoldIn {
        tag: "rec-zero".into(),
        beat: false,
    };
    let run = flow.start(never_recover, input).await.unwrap();
    probe("rec-zero").wait_progress(1).await;
    dir.crash(&flow).await;
    // No time passes at all: "0s" still means never recover.
    let flow = build().await.unwrap();
    let status = flow.status(&run.idempotency_key).await.unwrap();
    assert_eq!(status.status, TaskState::Failed);
    assert_eq!(status.error.unwrap().code, "recovery_max_age_exceeded");
    assert_eq!(flow.metrics().tasks_recovered, 0);
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_extends_the_recovery_age() {
    let dir = TempStore::new();
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let build = || {
        fast_builder(&dir)
            .register(beating)
            .clock(clock.clone())
            .heartbeat_interval(Duration::from_secs(3600))
            .build()
    };
    let flow = build().await.unwrap();
    let input = HoldIn {
        tag: "rec-beat".into(),
        beat: true,
    };
    let run = flow.start(beating, input).await.unwrap();
    let p = probe("rec-beat");
    p.wait_progress(1).await;
    // 50 s after the start the handler beats; 50 s after that the process dies. The run is
    // 100 s old but was alive 50 s ago: under its 1 min recovery_max_age.
    clock.advance(Duration::from_secs(50));
    p.release();
    p.wait_progress(2).await;
    clock.advance(Duration::from_secs(50));
    dir.crash(&flow).await;
    let flow = build().await.unwrap();
    let status = flow.status(&run.idempotency_key).await.unwrap();
    assert!(
        matches!(status.status, TaskState::Created | TaskState::Running),
        "{status:?}"
    );
    assert_eq!(flow.metrics().tasks_recovered, 1);
    flow.shutdown().await.unwrap();
}
