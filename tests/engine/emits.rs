//! Pipelined emits: `emit` returns once queued; order, gaplessness, durability at the next step
//! and at `flush`, fencing after a stop, and nothing lost or doubled across a crash.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use taskflow::prelude::*;
use taskflow::testing::TempStore;
use taskflow::{StoredEvent, TaskState};

use crate::support::*;

#[events]
#[derive(Debug, Clone, PartialEq)]
pub enum Burst {
    Item { writer: u32, k: u32 },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BurstIn {
    pub tag: String,
    pub writers: u32,
    pub n: u32,
    /// A step every this many items (0: none).
    pub step_every: u32,
    /// Flush after the burst, then report and hold until released or stopped.
    pub hold: bool,
    /// Emit until the emit fails (for the stop test).
    pub forever: bool,
}

/// Step bodies run (the step needs a side effect of its own).
static STEP_BODIES: AtomicU32 = AtomicU32::new(0);

#[task(name = "burst")]
pub async fn burst(ctx: TaskContext<Burst>, input: BurstIn) -> Result<u32, TaskError> {
    let p = probe(&input.tag);
    if input.forever {
        let mut k = 0;
        loop {
            if let Err(e) = ctx.emit(Burst::Item { writer: 0, k }).await {
                p.after_stop.lock().unwrap().push(e.code().to_owned());
                return Err(e);
            }
            k += 1;
            if k % 50 == 0 {
                p.progress.send_modify(|n| *n += 1);
                tokio::task::yield_now().await;
            }
        }
    }
    // Several clones of the context emit (and step) at once.
    let writers = (0..input.writers.max(1)).map(|writer| {
        let ctx = ctx.clone();
        let p = p.clone();
        async move {
            for k in 0..input.n {
                ctx.emit(Burst::Item { writer, k }).await?;
                if input.step_every > 0 && k % input.step_every == 0 {
                    ctx.step("mid", || async {
                        STEP_BODIES.fetch_add(1, Ordering::Relaxed);
                        Ok::<_, TaskError>(k)
                    })
                    .await?;
                }
                if k % 100 == 99 {
                    p.progress.send_modify(|n| *n += 1);
                }
            }
            Ok::<_, TaskError>(())
        }
    });
    for result in futures_util::future::join_all(writers).await {
        result?;
    }
    if input.hold {
        ctx.flush().await?;
        // Reported only once every emit above is durable.
        p.progress.send_replace(1_000_000);
        let mut release = p.release.subscribe();
        tokio::select! {
            _ = release.wait_for(|r| *r) => {}
            () = ctx.cancelled() => return Err(TaskError::new("stopped")),
        }
    }
    Ok(input.writers.max(1) * input.n)
}

fn builder(dir: &TempStore) -> taskflow::TaskFlowBuilder {
    fast_builder(dir).register(burst)
}

fn items(events: &[StoredEvent]) -> Vec<(u32, u32)> {
    events
        .iter()
        .filter(|e| e.name == "item")
        .map(|e| {
            (
                e.data["writer"].as_u64().unwrap() as u32,
                e.data["k"].as_u64().unwrap() as u32,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_emits_and_steps_are_logged_gapless_in_each_writers_order() {
    let dir = TempStore::new();
    let flow = builder(&dir).build().await.unwrap();
    let input = BurstIn {
        tag: "emit-order".into(),
        writers: 4,
        n: 500,
        step_every: 25,
        ..BurstIn::default()
    };
    let run = flow.start(burst, input).await.unwrap();
    assert_eq!(flow.wait(&run).await.unwrap(), 2000);
    let events = all_events(&flow, &run.idempotency_key, SubscribeFrom::Start).await;
    assert_gapless(&events, 1);
    let items = items(&events);
    assert_eq!(items.len(), 2000);
    for writer in 0..4 {
        let ks: Vec<u32> = items
            .iter()
            .filter(|i| i.0 == writer)
            .map(|i| i.1)
            .collect();
        assert_eq!(
            ks,
            (0..500).collect::<Vec<_>>(),
            "writer {writer} out of order"
        );
    }
    assert_eq!(events.last().unwrap().name, "completed");
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_and_a_flush_see_every_earlier_emit_durable() {
    let dir = TempStore::new();
    let flow = builder(&dir).build().await.unwrap();
    let input = BurstIn {
        tag: "emit-flush".into(),
        writers: 1,
        n: 300,
        hold: true,
        ..BurstIn::default()
    };
    let run = flow.start(burst, input).await.unwrap();
    let p = probe("emit-flush");
    p.wait_progress(1_000_000).await;
    // The handler holds after its flush: all 300 are in the log, nothing else yet.
    let status = flow.status(&run.idempotency_key).await.unwrap();
    assert_eq!(status.last_seq.get(), 300);
    p.release();
    flow.wait(&run).await.unwrap();

    // A step after 300 emits: emits queued before it are durable when it returns, and
    // they share group commits with it (far fewer commits than writes).
    let c0 = flow.metrics().wal_commits;
    let input = BurstIn {
        tag: "emit-step".into(),
        writers: 1,
        n: 301,
        step_every: 300,
        ..BurstIn::default()
    };
    let run = flow.start(burst, input).await.unwrap();
    flow.wait(&run).await.unwrap();
    let events = all_events(&flow, &run.idempotency_key, SubscribeFrom::Start).await;
    assert_gapless(&events, 1);
    assert_eq!(items(&events).len(), 301);
    let commits = flow.metrics().wal_commits - c0;
    println!("301 emits + 2 steps + lifecycle in {commits} commits");
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_attempts_queued_emits_never_reach_the_log_after_the_stop() {
    let dir = TempStore::new();
    let flow = builder(&dir).build().await.unwrap();
    let input = BurstIn {
        tag: "emit-stop".into(),
        forever: true,
        ..BurstIn::default()
    };
    let run = flow.start(burst, input).await.unwrap();
    let p = probe("emit-stop");
    p.wait_progress(10).await;
    flow.stop(&run.idempotency_key, None).await.unwrap();
    wait_status(&flow, &run.idempotency_key, |s| s == TaskState::Suspended).await;
    // The handler queues nothing once one of its emits failed.
    until("the handler saw the stop", async || {
        !p.after_stop.lock().unwrap().is_empty()
    })
    .await;
    // A barrier instead of a wait: the store commits batches in the order they were queued, so
    // once another run has finished, everything the stopped attempt queued was committed or
    // refused.
    let barrier = BurstIn {
        tag: "emit-stop-barrier".into(),
        n: 1,
        ..BurstIn::default()
    };
    let barrier = flow.start(burst, barrier).await.unwrap();
    flow.wait(&barrier).await.unwrap();
    let last = flow.status(&run.idempotency_key).await.unwrap().last_seq;
    let mut sub = flow
        .subscribe(&run.idempotency_key, SubscribeFrom::Start)
        .await
        .unwrap();
    let mut events: Vec<StoredEvent> = Vec::new();
    // A suspended run's stream does not end: read up to the log's last seq.
    while events.last().is_none_or(|e| e.seq < last) {
        let e = tokio::time::timeout(Duration::from_secs(20), sub.next())
            .await
            .expect("the log's events come")
            .expect("the stream stays open");
        events.push(e.unwrap());
    }
    assert_gapless(&events, 1);
    let suspended = events.iter().position(|e| e.name == "suspended").unwrap();
    assert_eq!(
        suspended,
        events.len() - 1,
        "events after the stop: {:?}",
        &events[suspended..]
    );
    let codes = p.after_stop.lock().unwrap().clone();
    assert_eq!(
        codes,
        ["stopped"],
        "the handler's next emit failed as stopped"
    );
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_burst_loses_nothing_seen_and_doubles_nothing_after_recovery() {
    let dir = TempStore::new();
    let flow = builder(&dir).build().await.unwrap();
    let input = BurstIn {
        tag: "emit-crash".into(),
        writers: 1,
        n: 5000,
        ..BurstIn::default()
    };
    let run = flow.start(burst, input).await.unwrap();
    let ik = run.idempotency_key.clone();
    // A subscriber reads live; what it saw before the crash must be in the log after.
    let mut sub = flow.subscribe(&ik, SubscribeFrom::Start).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 1500 {
        seen.push(sub.next().await.unwrap().unwrap());
    }
    dir.crash(&flow).await;
    drop(sub);
    let flow = builder(&dir).build().await.unwrap();
    assert_eq!(flow.wait(&run).await.unwrap(), 5000);
    let events = all_events(&flow, &ik, SubscribeFrom::Start).await;
    assert_gapless(&events, 1);
    assert_eq!(
        &events[..seen.len()],
        &seen[..],
        "a seen event changed or vanished"
    );
    let ks: Vec<u32> = items(&events).iter().map(|i| i.1).collect();
    assert_eq!(ks, (0..5000).collect::<Vec<_>>(), "lost or doubled items");
    flow.shutdown().await.unwrap();
}
