//! What taskflow tells `tracing`: the bridge, submit, run, attempt, step and recovery spans, and the
//! warnings for a non-deterministic handler (another event at a replayed position, a step
//! replayed from another call site). Captured with a subscriber of the test's own.

use std::sync::atomic::{AtomicU32, Ordering};

use taskflow::prelude::*;
use taskflow::testing::TempStore;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::support::*;

#[events]
#[derive(Debug)]
enum Wobble {
    First,
    Second,
}

static WOBBLY_ATTEMPTS: AtomicU32 = AtomicU32::new(0);

/// Attempt 1 steps at one call site, emits `first`, and fails; attempt 2 steps at another
/// call site and emits `second` at the same position: both are non-determinism.
#[task(name = "wobbly", max_attempts = 2)]
async fn wobbly(ctx: TaskContext<Wobble>, _input: ()) -> Result<u32, TaskError> {
    let attempt = WOBBLY_ATTEMPTS.fetch_add(1, Ordering::SeqCst) + 1;
    // Not a literal: the macro's duplicate-name check would (rightly) refuse two call sites.
    let name = "s";
    if attempt == 1 {
        ctx.step(name, || async { Ok::<_, TaskError>(1u32) })
            .await?;
        ctx.emit(Wobble::First).await?;
        ctx.flush().await?;
        return Err(TaskError::new("first attempt fails"));
    }
    let v = ctx
        .step(name, || async { Ok::<_, TaskError>(2u32) })
        .await?;
    ctx.emit(Wobble::Second).await?;
    Ok(v)
}

/// `tracing` caches per call site whether anyone listens, globally; tests of this binary that
/// run at the same time on other threads can race that cache against this test's thread-local
/// subscriber. So the check runs in a child process of this binary that runs only it.
#[test]
fn spans_and_non_determinism_warnings_reach_tracing() {
    const CHILD: &str = "TASKFLOW_SPANS_CHILD";
    if std::env::var_os(CHILD).is_some() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(check_spans());
        return;
    }
    run_alone_in_child(
        "spans::spans_and_non_determinism_warnings_reach_tracing",
        CHILD,
    );
}

async fn check_spans() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(FmtSpan::NEW)
        .finish();
    // This thread only: the test's runtime is single-threaded, so every task it spawns logs here.
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = TempStore::new();
    let flow = fast_builder(&dir).register(wobbly).build().await.unwrap();
    let run = flow.start(wobbly, ()).await.unwrap();
    assert_eq!(
        flow.wait(&run).await.unwrap(),
        1,
        "attempt 2 replays attempt 1's step"
    );
    // The same run through the HTTP bridge, for the bridge span.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = taskflow::axum::routes_with(flow.clone(), taskflow::axum::Anonymous::AsService);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let replay = reqwest::Client::new()
        .post(format!("http://{addr}/tasks/wobbly"))
        .json(&())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(replay.contains("event: completed"), "{replay}");
    server.abort();
    // A crash and a recovery, for the recovery span.
    let mut s = Script::new("spans-recovery");
    s.steps = 1;
    s.hold = true;
    let held = flow.start(scripted, s).await.unwrap();
    probe("spans-recovery").wait_progress(1).await;
    dir.crash(&flow).await;
    let flow = fast_builder(&dir).register(wobbly).build().await.unwrap();
    probe("spans-recovery").release();
    flow.wait(&held).await.unwrap();
    flow.shutdown().await.unwrap();

    let text = captured.text();
    for span in ["bridge", "submit", "run", "attempt", "step", "recovery"] {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!("{span}{{")) || l.contains(&format!(" {span}: "))),
            "no `{span}` span in:\n{text}"
        );
    }
    assert!(
        text.contains("non-deterministic handler") && text.contains("recorded=first"),
        "no non-determinism warning for the event:\n{text}"
    );
    assert!(
        text.contains("step replayed from a different call site"),
        "no call-site warning for the step:\n{text}"
    );
}
