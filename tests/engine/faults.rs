//! The EIO matrix: a workload of concurrent tasks with steps and events, run once per storage
//! operation index with that operation failing (once, and sticky: every later one too). No
//! panic; a failed write or fsync fail-stops the store (metric, one log line); the file opens
//! again; recovery finishes every run with no acknowledged step re-run and gapless events.
//!
//! The file is created first by a clean start (as `data_dir` creates it: atomically, which
//! the storage tests cover), then opened through the faulty backend: the matrix is every
//! operation of opening it and running the workload, every index, once and sticky.

use std::time::Duration;

use taskflow::testing::{InstrumentedBackend, SimulateCrash, TempDataDir};
use taskflow::{SubscribeFrom, TaskFlow};

use crate::support::*;

const RUNS: u32 = 2;

fn script(tag: &str, r: u32) -> Script {
    let mut s = Script::new(&format!("{tag}-{r}"));
    s.steps = 3;
    s
}

/// Starts the runs and waits for them (each may fail: the disk does).
async fn workload(flow: &TaskFlow, tag: &str) {
    let mut runs = Vec::new();
    for r in 0..RUNS {
        if let Ok(run) = flow.start(scripted, script(tag, r)).await {
            runs.push(run);
        }
    }
    // Until each finished, or the store fail-stopped (then nothing more finishes here).
    for run in &runs {
        let waited = flow.wait(run);
        tokio::pin!(waited);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !flow.is_storage_failed() && tokio::time::Instant::now() < deadline {
            tokio::select! {
                _ = &mut waited => break,
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    }
}

/// What one faulty life did.
#[derive(Debug, Default)]
struct Outcome {
    refused_at_open: bool,
    fail_stopped: bool,
}

/// A data dir holding an empty database, created the way `data_dir` creates one.
async fn created() -> TempDataDir {
    let dir = TempDataDir::new();
    fast(dir.builder())
        .build()
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
    dir
}

async fn one_index(index: u64, sticky: bool) -> Outcome {
    let tag = format!("eio-{}-{index}", if sticky { "sticky" } else { "once" });
    let dir = created().await;
    let (backend, io) = InstrumentedBackend::create(dir.path()).unwrap();
    io.fail_operation(index, sticky);
    let mut outcome = Outcome::default();
    match fast(TaskFlow::builder().storage_backend(dir.path(), backend))
        .build()
        .await
    {
        Err(e) => {
            assert!(!e.to_string().is_empty());
            outcome.refused_at_open = true;
        }
        Ok(flow) => {
            workload(&flow, &tag).await;
            outcome.fail_stopped = flow.is_storage_failed();
            if outcome.fail_stopped {
                assert_eq!(
                    flow.metrics().store_failed,
                    1,
                    "index {index}: the metric says so"
                );
            }
            flow.crash();
        }
    }
    // The disk works again; a restart finishes everything, re-running nothing acknowledged.
    let flow = fast(dir.builder()).build().await.unwrap_or_else(|e| {
        panic!("index {index} sticky {sticky}: the file does not open again: {e}")
    });
    for r in 0..RUNS {
        let s = script(&tag, r);
        let run = flow.start(scripted, s.clone()).await.unwrap();
        let out = tokio::time::timeout(Duration::from_secs(20), flow.wait(&run))
            .await
            .expect("the run finishes after the restart")
            .unwrap_or_else(|e| panic!("index {index} sticky {sticky} run {r}: {e}"));
        assert_eq!(out.values.len(), 3);
        let p = probe(&s.tag);
        assert_eq!(
            p.reran_after_commit
                .load(std::sync::atomic::Ordering::SeqCst),
            0,
            "index {index} sticky {sticky}: a step whose result was acknowledged ran again"
        );
        let events = all_events(&flow, &run.idempotency_key, SubscribeFrom::Start).await;
        let first = events.first().map_or(1, |e| e.seq.get());
        assert_gapless(&events, first);
    }
    flow.shutdown().await.unwrap();
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_io_error_at_any_storage_operation_loses_nothing_acknowledged() {
    // How many operations the workload makes when nothing fails.
    let dir = created().await;
    let (backend, io) = InstrumentedBackend::create(dir.path()).unwrap();
    let flow = fast(TaskFlow::builder().storage_backend(dir.path(), backend))
        .build()
        .await
        .unwrap();
    workload(&flow, "eio-count").await;
    flow.shutdown().await.unwrap();
    let total = io.operations();
    let (mut tried, mut refused, mut stopped) = (0, 0, 0);
    for sticky in [false, true] {
        let mut index = 0;
        while index < total {
            let o = one_index(index, sticky).await;
            tried += 1;
            refused += u32::from(o.refused_at_open);
            stopped += u32::from(o.fail_stopped);
            index += 1;
        }
    }
    println!(
        "EIO matrix: the workload makes {total} storage operations; tried {tried} faults (every index, once and sticky): {refused} refused at open, {stopped} fail-stopped, 0 acknowledged writes lost"
    );
    assert!(stopped > 0, "some faults must hit commits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_commit_the_routes_answer_503_storage_unavailable() {
    let dir = created().await;
    let (backend, io) = InstrumentedBackend::create(dir.path()).unwrap();
    let flow = fast(TaskFlow::builder().storage_backend(dir.path(), backend))
        .build()
        .await
        .unwrap();
    // The disk dies now: the next storage operation and all later ones fail.
    io.fail_operation(io.operations(), true);
    let app = taskflow::axum::routes_with(flow.clone(), taskflow::axum::Anonymous::AsService);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    for attempt in 0..2 {
        let r = client
            .post(format!("{base}/tasks/scripted"))
            .json(&script("eio-http", attempt))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "POST {attempt}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");
    }
    assert!(flow.is_storage_failed());
    assert_eq!(flow.metrics().store_failed, 1);
    flow.crash();
}
