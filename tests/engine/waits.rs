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

use crate::support::assert_gapless;

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

async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}: timed out");
        tokio::time::sleep(Duration::from_millis(10)).await;
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
    assert_eq!(flow.metrics().runs_parked, 1);
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
    let mut events = flow.subscribe(&ik, SubscribeFrom::Start).await.unwrap();
    let mut seen = Vec::new();
    while let Some(e) = events.next().await {
        seen.push(e.unwrap());
    }
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
    let mut events = flow.subscribe(&ik, SubscribeFrom::Start).await.unwrap();
    let mut names = Vec::new();
    while let Some(e) = events.next().await {
        names.push(e.unwrap().name);
    }
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
