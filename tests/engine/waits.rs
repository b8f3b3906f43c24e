//! Durable sleep (issue 13, part 1): the wake-up time is committed, a sleeping run is parked
//! in the store (no slot, no handler), the status and the stream say what it waits for, a
//! stop ends the wait and a resume sleeps only the remainder, and a crash while it sleeps
//! loses nothing: it wakes at its time after the restart. Time is a `ManualClock`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use taskflow::prelude::*;
use taskflow::testing::TempStore;
use taskflow::{ManualClock, SubscribeFrom, TaskState, Timestamp, WaitKind, Waiting};

use crate::support::{all_events, assert_gapless, until};

/// How often each tag's `prepare` body ran (the tests run at once in one process).
static PREPARED: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

fn prepared(tag: &str) -> u32 {
    PREPARED
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|m| m.get(tag).copied())
        .unwrap_or(0)
}

fn count_prepare(tag: &str) -> u32 {
    let mut map = PREPARED.lock().unwrap();
    let n = map
        .get_or_insert_with(HashMap::new)
        .entry(tag.to_owned())
        .or_default();
    *n += 1;
    *n
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Nap {
    tag: String,
    secs: u64,
}

#[events]
#[derive(Debug, Clone)]
pub enum NapProgress {
    Prepared { n: u32 },
    Awake,
}

/// A step, an event, a durable sleep, another event.
#[task(name = "napper")]
pub async fn napper(ctx: TaskContext<NapProgress>, nap: Nap) -> Result<u32, TaskError> {
    let n = ctx
        .step("prepare", || async {
            Ok::<_, TaskError>(count_prepare(&nap.tag))
        })
        .await?;
    ctx.emit(NapProgress::Prepared { n }).await?;
    ctx.sleep(Duration::from_secs(nap.secs)).await?;
    ctx.emit(NapProgress::Awake).await?;
    Ok(n)
}

/// Quick work, to see that a parked run holds no slot.
#[task(name = "quick")]
pub async fn quick(_ctx: TaskContext<NoEvents>, n: u32) -> Result<u32, TaskError> {
    Ok(n)
}

const START: u64 = 1_800_000_000_000;

fn nap(tag: &str, secs: u64) -> Nap {
    Nap {
        tag: tag.to_owned(),
        secs,
    }
}

async fn parked(flow: &taskflow::TaskFlow, ik: &taskflow::IdempotencyKey) -> Option<Waiting> {
    let status = flow.status(ik).await.unwrap();
    status.waiting
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_run_is_parked_without_a_slot_and_wakes_at_its_time() {
    let store = TempStore::new();
    let clock = ManualClock::new(Timestamp::from_millis(START));
    let flow = store
        .builder()
        .clock(clock.clone())
        .max_concurrent(1)
        .register(napper)
        .register(quick)
        .build()
        .await
        .unwrap();
    let run = flow.start(napper, nap("park", 3600)).await.unwrap();
    let ik = run.idempotency_key.clone();
    until("parked", async || parked(&flow, &ik).await.is_some()).await;
    let status = flow.status(&ik).await.unwrap();
    assert_eq!(status.status, TaskState::Running);
    assert_eq!(
        status.waiting,
        Some(Waiting::Sleep {
            until: Timestamp::from_millis(START + 3_600_000)
        })
    );
    // Counted once the park's commit returned to the handler, a moment after it is visible.
    until("counted", async || flow.metrics().runs_parked == 1).await;
    // The one slot is free: other work runs while it sleeps.
    let other = flow.start(quick, 7).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), flow.wait(&other))
        .await
        .expect("quick work ran while the napper slept")
        .unwrap();
    assert_eq!(got, 7);
    // An hour less a second: still asleep.
    clock.advance(Duration::from_secs(3599));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(parked(&flow, &ik).await.is_some(), "woke early");
    clock.advance(Duration::from_secs(1));
    let n = tokio::time::timeout(Duration::from_secs(10), flow.wait(&run))
        .await
        .expect("woke at its time")
        .unwrap();
    assert_eq!(prepared("park"), 1, "the step replayed");
    let seen = all_events(&flow, &ik, SubscribeFrom::Start).await;
    assert_gapless(&seen, 1);
    let names: Vec<&str> = seen.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["prepared", "waiting", "wait_ended", "awake", "completed"]
    );
    assert_eq!(
        seen[1].data,
        serde_json::json!({"kind": "sleep", "until": Timestamp::from_millis(START + 3_600_000).to_rfc3339(), "until_ms": START + 3_600_000})
    );
    assert_eq!(seen[2].data, serde_json::json!({"kind": "sleep"}));
    assert!(flow.status(&ik).await.unwrap().waiting.is_none());
    assert_eq!(flow.metrics().runs_woken, 1);
    assert_eq!(n, 1, "the output is the first run of the step");
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_asleep_wakes_at_the_same_time_after_the_restart() {
    let store = TempStore::new();
    let clock = ManualClock::new(Timestamp::from_millis(START));
    let build = || {
        store
            .builder()
            .clock(clock.clone())
            .register(napper)
            .build()
    };
    let flow = build().await.unwrap();
    let run = flow.start(napper, nap("crash", 600)).await.unwrap();
    let ik = run.idempotency_key.clone();
    until("parked", async || parked(&flow, &ik).await.is_some()).await;
    store.crash(&flow).await;

    // Restarted half-way through: it sleeps the other half, not the whole nap again.
    clock.advance(Duration::from_secs(300));
    let flow = build().await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        parked(&flow, &ik).await,
        Some(Waiting::Sleep {
            until: Timestamp::from_millis(START + 600_000)
        }),
        "still asleep after the restart"
    );
    clock.advance(Duration::from_secs(300));
    tokio::time::timeout(Duration::from_secs(10), flow.wait(&run))
        .await
        .expect("woke at its time after the restart")
        .unwrap();
    assert_eq!(prepared("crash"), 1, "nothing re-ran");
    let names: Vec<String> = all_events(&flow, &ik, SubscribeFrom::Start)
        .await
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(
        names,
        ["prepared", "waiting", "wait_ended", "awake", "completed"]
    );
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_ends_the_wait_and_a_resume_sleeps_only_the_remainder() {
    let store = TempStore::new();
    let clock = ManualClock::new(Timestamp::from_millis(START));
    let flow = store
        .builder()
        .clock(clock.clone())
        .register(napper)
        .build()
        .await
        .unwrap();
    let run = flow.start(napper, nap("stop", 60)).await.unwrap();
    let ik = run.idempotency_key.clone();
    until("parked", async || parked(&flow, &ik).await.is_some()).await;
    let stopped = flow.stop(&ik, Some("not now")).await.unwrap();
    assert_eq!(stopped.status, TaskState::Suspended);
    assert!(
        stopped.waiting.is_none(),
        "a suspended run waits for nothing"
    );
    // Its time passes while suspended: the timer leaves it alone.
    clock.advance(Duration::from_secs(30));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(flow.status(&ik).await.unwrap().status, TaskState::Suspended);
    // Resumed, it parks again until the time it chose first, not 60 s from now.
    flow.resume(&ik).await.unwrap();
    until("parked again", async || parked(&flow, &ik).await.is_some()).await;
    assert_eq!(
        parked(&flow, &ik).await.map(|w| w.kind()),
        Some(WaitKind::Sleep)
    );
    assert_eq!(
        parked(&flow, &ik).await.and_then(|w| w.until()),
        Some(Timestamp::from_millis(START + 60_000))
    );
    clock.advance(Duration::from_secs(30));
    tokio::time::timeout(Duration::from_secs(10), flow.wait(&run))
        .await
        .expect("woke after the remainder")
        .unwrap();
    flow.shutdown().await.unwrap();
}

/// A real, short sleep between two steps.
#[task(name = "short-napper")]
pub async fn short_napper(ctx: TaskContext<NapProgress>, ms: u64) -> Result<u32, TaskError> {
    let n = ctx
        .step("before", || async { Ok::<_, TaskError>(1u32) })
        .await?;
    ctx.emit(NapProgress::Prepared { n }).await?;
    ctx.sleep(Duration::from_millis(ms)).await?;
    ctx.emit(NapProgress::Awake).await?;
    ctx.step("after", || async move { Ok::<_, TaskError>(n + 1) })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_every_commit_around_a_sleep_recovers_to_the_same_run() {
    let report = taskflow::testing::CrashMatrix::new(short_napper, 30)
        .store(TempStore::new)
        .run()
        .await
        .unwrap();
    println!("short-napper: {report}");
    // The park and the wake are commits of their own, crashed at like any other.
    assert!(report.commits >= 6, "{report}");
    assert_eq!(report.points.len() as u64, 2 * report.commits);
}

/// Sleeps a minute and says which it was.
#[task(name = "sleepy")]
pub async fn sleepy(ctx: TaskContext<NoEvents>, i: u32) -> Result<u32, TaskError> {
    ctx.sleep(Duration::from_secs(60)).await?;
    Ok(i)
}

/// Resident memory of this process, in bytes (Linux).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split(' ').nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sleeping_runs_hold_no_task_and_no_slot_and_all_wake_after_a_restart() {
    let store = TempStore::new();
    // On PostgreSQL each start and park is a round trip to the server: a tenth of the runs
    // keeps the suite's time (the claim and wake paths are the same); TASKFLOW_SLEEPING_RUNS
    // sets another count.
    let n: u32 = std::env::var("TASKFLOW_SLEEPING_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if store.kind().starts_with("redb") {
            10_000
        } else {
            1_000
        });
    let clock = ManualClock::new(Timestamp::from_millis(START));
    let build = || {
        store
            .builder()
            .clock(clock.clone())
            .max_concurrent(20)
            .start_rate_per_minute(10 * n as usize)
            .queue_limit(2 * n as usize)
            .register(sleepy)
            .register(quick)
            .build()
    };
    let flow = build().await.unwrap();
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let (tasks_before, rss_before) = (tasks(), rss());
    let started = std::time::Instant::now();
    let mut runs = Vec::new();
    for i in 0..n {
        runs.push(flow.start(sleepy, i).await.unwrap());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while flow.metrics().runs_parked < u64::from(n) {
        assert!(tokio::time::Instant::now() < deadline, "not all parked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let parked_in = started.elapsed();
    // Let the last drivers exit.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (tasks_parked, rss_parked) = (tasks(), rss());
    println!(
        "{n} runs parked in {parked_in:?}: tokio tasks {tasks_before} before, {tasks_parked} while all sleep; resident memory +{} KiB ({} bytes per run, store cache included)",
        rss_parked.saturating_sub(rss_before) / 1024,
        rss_parked.saturating_sub(rss_before) / u64::from(n)
    );
    assert!(
        tasks_parked <= tasks_before + 5,
        "{tasks_parked} tasks alive with {n} runs asleep (before: {tasks_before})"
    );
    // No slot is held: with 20 slots, 20 more runs start at once.
    let quick_runs: Vec<_> = futures_util::future::join_all((0..20).map(|i| flow.start(quick, i)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for run in &quick_runs {
        tokio::time::timeout(Duration::from_secs(10), flow.wait(run))
            .await
            .expect("a slot was free")
            .unwrap();
    }
    flow.shutdown().await.unwrap();

    // After a restart, their time comes: every one wakes and finishes.
    let flow = build().await.unwrap();
    let at = std::time::Instant::now();
    clock.advance(Duration::from_secs(60));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while flow.metrics().runs_woken < u64::from(n) {
        assert!(tokio::time::Instant::now() < deadline, "not all woke");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let woken_in = at.elapsed();
    for (i, run) in runs.iter().enumerate() {
        assert_eq!(flow.wait(run).await.unwrap(), i as u32);
    }
    println!(
        "after a restart: all {n} woken (admitted) {woken_in:?} after their time, all finished {:?} after it",
        at.elapsed()
    );
    flow.shutdown().await.unwrap();
}

/// Two decisions in a row, each a signal `decision`; the step before them counts its runs.
#[task(name = "decider")]
pub async fn decider(ctx: TaskContext<NoEvents>, tag: String) -> Result<Vec<u32>, TaskError> {
    ctx.step("prepare", || async {
        Ok::<_, TaskError>(count_prepare(&tag))
    })
    .await?;
    let first: serde_json::Value = ctx.wait_signal("decision").await?;
    let second: serde_json::Value = ctx.wait_signal("decision").await?;
    let n = |v: &serde_json::Value| u32::try_from(v["n"].as_u64().unwrap_or(0)).unwrap_or(0);
    Ok(vec![n(&first), n(&second)])
}

async fn parked_for_signal(flow: &taskflow::TaskFlow, ik: &taskflow::IdempotencyKey) -> bool {
    parked(flow, ik).await.as_ref().and_then(Waiting::signal) == Some("decision")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_are_kept_in_order_and_each_consumed_once() {
    let store = TempStore::new();
    let flow = store.builder().register(decider).build().await.unwrap();
    // Both sent before the handler waits for either: kept, delivered in order.
    let run = flow.start(decider, "early".to_owned()).await.unwrap();
    let ik = run.idempotency_key.clone();
    flow.signal(&ik, "decision", serde_json::json!({"n": 1}))
        .await
        .unwrap();
    flow.signal(&ik, "decision", serde_json::json!({"n": 2}))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), flow.wait(&run))
        .await
        .expect("finished")
        .unwrap();
    assert_eq!(got, vec![1, 2]);
    // A finished run takes no more signals.
    let e = flow
        .signal(&ik, "decision", serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(e, taskflow::ControlError::InvalidState { .. }),
        "{e}"
    );
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_parked_for_a_signal_holds_no_slot_and_wakes_when_it_comes_even_after_a_crash() {
    let store = TempStore::new();
    let build = || {
        store
            .builder()
            .max_concurrent(1)
            .register(decider)
            .register(quick)
            .build()
    };
    let flow = build().await.unwrap();
    let run = flow.start(decider, "parked".to_owned()).await.unwrap();
    let ik = run.idempotency_key.clone();
    until("parked", async || parked_for_signal(&flow, &ik).await).await;
    let quick_run = flow.start(quick, 3).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), flow.wait(&quick_run))
        .await
        .expect("the one slot is free while the run waits for its signal")
        .unwrap();
    // The first signal wakes it; it parks again for the second.
    flow.signal(&ik, "decision", serde_json::json!({"n": 7}))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while flow.metrics().runs_parked < 2 {
        assert!(tokio::time::Instant::now() < deadline, "did not wait again");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    until("parked again", async || parked_for_signal(&flow, &ik).await).await;
    // A crash while it waits; the second signal goes to the restarted flow.
    store.crash(&flow).await;
    let flow = build().await.unwrap();
    flow.signal(&ik, "decision", serde_json::json!({"n": 8}))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), flow.wait(&run))
        .await
        .expect("woke for the signal after the restart")
        .unwrap();
    assert_eq!(got, vec![7, 8]);
    assert_eq!(prepared("parked"), 1, "the step before the waits ran once");
    let seen = all_events(&flow, &ik, SubscribeFrom::Start).await;
    assert_gapless(&seen, 1);
    let waits: Vec<(&str, serde_json::Value)> = seen
        .iter()
        .map(|e| (e.name.as_str(), e.data.clone()))
        .filter(|(n, _)| n.starts_with("wait"))
        .collect();
    assert_eq!(
        waits.first(),
        Some(&(
            "waiting",
            serde_json::json!({"kind": "signal", "name": "decision"})
        ))
    );
    assert_eq!(
        waits.last(),
        Some(&("wait_ended", serde_json::json!({"kind": "signal"})))
    );
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_is_refused_for_another_owner_a_bad_name_and_a_huge_payload() {
    let store = TempStore::new();
    let flow = store
        .builder()
        .payload_limit(1024)
        .register(decider)
        .build()
        .await
        .unwrap();
    let alice = taskflow::UserContext::new(taskflow::UserId::new("alice").unwrap());
    let run = flow
        .as_user(&alice)
        .start(decider, "owned".to_owned())
        .await
        .unwrap();
    let ik = run.idempotency_key.clone();
    let bob = taskflow::UserContext::new(taskflow::UserId::new("bob").unwrap());
    let e = flow
        .as_user(&bob)
        .signal(&ik, "decision", serde_json::json!({"n": 1}))
        .await
        .unwrap_err();
    assert!(matches!(e, taskflow::ControlError::NotFound), "{e}");
    let e = flow
        .as_user(&alice)
        .signal(&ik, "no spaces", serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(matches!(e, taskflow::ControlError::InvalidName(_)), "{e}");
    let e = flow
        .as_user(&alice)
        .signal(
            &ik,
            "decision",
            serde_json::json!({"pad": "x".repeat(2000)}),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, taskflow::ControlError::PayloadTooLarge(_)),
        "{e}"
    );
    flow.cancel(&ik, None).await.ok();
    flow.shutdown().await.unwrap();
}

/// A wait with a deadline, then one without.
#[task(name = "impatient")]
pub async fn impatient(ctx: TaskContext<NoEvents>, _tag: String) -> Result<(bool, u64), TaskError> {
    let first: Option<serde_json::Value> =
        ctx.wait_signal_for("go", Duration::from_secs(60)).await?;
    let second: serde_json::Value = ctx.wait_signal("go").await?;
    Ok((first.is_some(), second["n"].as_u64().unwrap_or(0)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_wait_times_out_at_its_deadline_and_a_late_signal_goes_to_the_next_wait() {
    let store = TempStore::new();
    let clock = ManualClock::new(Timestamp::from_millis(START));
    let build = || {
        store
            .builder()
            .clock(clock.clone())
            .register(impatient)
            .build()
    };
    let flow = build().await.unwrap();
    // Timed out: the deadline passes (across a crash), then the one signal goes to the second wait.
    let run = flow.start(impatient, "late".to_owned()).await.unwrap();
    let ik = run.idempotency_key.clone();
    until("parked", async || parked(&flow, &ik).await.is_some()).await;
    assert_eq!(
        parked(&flow, &ik).await,
        Some(Waiting::Signal {
            name: "go".into(),
            until: Some(Timestamp::from_millis(START + 60_000))
        })
    );
    store.crash(&flow).await;
    let flow = build().await.unwrap();
    clock.advance(Duration::from_secs(30));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        parked(&flow, &ik).await.and_then(|w| w.until()).is_some(),
        "still waiting with its deadline after the restart"
    );
    clock.advance(Duration::from_secs(30));
    until("timed out and waiting again", async || {
        parked(&flow, &ik)
            .await
            .is_some_and(|w| w.until().is_none())
    })
    .await;
    flow.signal(&ik, "go", serde_json::json!({"n": 5}))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), flow.wait(&run))
        .await
        .expect("finished")
        .unwrap();
    assert_eq!(got, (false, 5));

    // In time: the first wait gets the first signal, the second the second.
    let run = flow.start(impatient, "in-time".to_owned()).await.unwrap();
    let ik = run.idempotency_key.clone();
    until("parked", async || parked(&flow, &ik).await.is_some()).await;
    flow.signal(&ik, "go", serde_json::json!({"n": 1}))
        .await
        .unwrap();
    flow.signal(&ik, "go", serde_json::json!({"n": 2}))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), flow.wait(&run))
        .await
        .expect("finished")
        .unwrap();
    assert_eq!(got, (true, 2));
    flow.shutdown().await.unwrap();
}
