//! Retries: only `Err` and panics use up attempts; backoff is persisted.

use std::sync::atomic::Ordering;
use std::time::Duration;

use taskflow::testing::TempStore;
use taskflow::{StartOptions, TaskState, WaitError};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_errors_then_ok_completes_with_three_attempts() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir).build().await.unwrap();
    let mut s = Script::new("retry-ok");
    s.steps = 2;
    s.fail_times = 2;
    let run = flow
        .start_with(scripted, s, StartOptions::new().max_attempts(attempts(3)))
        .await
        .unwrap();
    let out = flow.wait(&run).await.unwrap();
    let p = probe("retry-ok");
    assert_eq!(p.attempts.load(Ordering::SeqCst), 3);
    assert_eq!(
        out.values,
        vec![1, 1001],
        "steps recorded in attempt 1 are replayed"
    );
    let status = flow.status(&run.idempotency_key).await.unwrap();
    assert_eq!((status.attempt, status.failed_attempts), (3, 2));
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_errors_fail_with_the_last_message() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir).build().await.unwrap();
    let mut s = Script::new("retry-fail");
    s.fail_times = 10;
    let run = flow
        .start_with(scripted, s, StartOptions::new().max_attempts(attempts(3)))
        .await
        .unwrap();
    match flow.wait(&run).await {
        Err(WaitError::Failed(e)) => {
            assert_eq!(e.message, "scripted failure 3");
            assert_eq!(e.code, "task_error");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(probe("retry-fail").attempts.load(Ordering::SeqCst), 3);
    let status = flow.status(&run.idempotency_key).await.unwrap();
    assert_eq!(status.status, TaskState::Failed);
    assert_eq!(status.failed_attempts, 3);
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_skips_the_remaining_attempts() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir).build().await.unwrap();
    let mut s = Script::new("retry-permanent");
    s.fail_times = 10;
    s.permanent = true;
    let run = flow.start(scripted, s).await.unwrap();
    assert!(matches!(flow.wait(&run).await, Err(WaitError::Failed(_))));
    assert_eq!(probe("retry-permanent").attempts.load(Ordering::SeqCst), 1);
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_an_attempt_with_code_panicked_and_the_runtime_survives() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir).build().await.unwrap();
    let mut once = Script::new("retry-panic-once");
    once.panic_times = 1;
    let run = flow.start(scripted, once).await.unwrap();
    flow.wait(&run).await.unwrap();
    assert_eq!(probe("retry-panic-once").attempts.load(Ordering::SeqCst), 2);

    let mut always = Script::new("retry-panic-always");
    always.panic_times = 10;
    let run = flow
        .start_with(
            scripted,
            always,
            StartOptions::new().max_attempts(attempts(2)),
        )
        .await
        .unwrap();
    match flow.wait(&run).await {
        Err(WaitError::Failed(e)) => {
            assert_eq!(e.code, "panicked");
            assert_eq!(e.message, "scripted panic 2");
        }
        other => panic!("{other:?}"),
    }
    // Still serving.
    let mut after = Script::new("retry-after-panic");
    after.steps = 1;
    let run = flow.start(scripted, after).await.unwrap();
    flow.wait(&run).await.unwrap();
    flow.shutdown().await.unwrap();
}

/// A task whose every attempt fails with a handler error that happens to use the code the
/// engine gives its own stop errors.
#[taskflow::task(name = "coded-stopped", max_attempts = 2)]
async fn coded_stopped(
    ctx: taskflow::TaskContext<taskflow::NoEvents>,
    tag: String,
) -> Result<(), taskflow::TaskError> {
    let _ = (ctx, tag);
    Err(taskflow::TaskError::new("not really stopped").with_code("stopped"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_error_coded_stopped_is_an_ordinary_failure() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir)
        .register(coded_stopped)
        .build()
        .await
        .unwrap();
    let run = flow.start(coded_stopped, "s".into()).await.unwrap();
    // Before the typed stop kind the code alone skipped retry and failure accounting, and the
    // run hung in `running` for ever.
    let result = tokio::time::timeout(std::time::Duration::from_secs(20), flow.wait(&run))
        .await
        .expect("the run must settle");
    match result {
        Err(WaitError::Failed(e)) => assert_eq!(e.code, "stopped"),
        other => panic!("{other:?}"),
    }
    let status = flow.status(&run.idempotency_key).await.unwrap();
    assert_eq!(
        (status.status, status.failed_attempts),
        (TaskState::Failed, 2)
    );
    flow.shutdown().await.unwrap();
}

fn attempts(n: u32) -> std::num::NonZeroU32 {
    std::num::NonZeroU32::new(n).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_waits_for_its_persisted_time_across_a_restart() {
    let dir = TempStore::new();
    let build = || {
        fast_builder(&dir)
            .retry_backoff(Duration::from_secs(2), Duration::from_secs(2))
            .build()
    };
    let flow = build().await.unwrap();
    let mut s = Script::new("retry-restart");
    s.fail_times = 1;
    let run = flow
        .start_with(scripted, s, StartOptions::new().max_attempts(attempts(3)))
        .await
        .unwrap();
    let ik = run.idempotency_key.clone();
    // Attempt 1 failed: its retry is due 2 s later, recorded as next_attempt_at.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while flow.status(&ik).await.unwrap().failed_attempts < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "attempt 1 never failed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let failed_at = tokio::time::Instant::now();
    dir.crash(&flow).await;
    // The next process recovers the run but keeps the backoff.
    let flow = build().await.unwrap();
    let p = probe("retry-restart");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while p.attempts.load(Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the retry never ran"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let waited = failed_at.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "attempt 2 started {waited:?} after attempt 1 failed: the backoff was lost"
    );
    assert!(flow.wait(&run).await.is_ok());
    flow.shutdown().await.unwrap();
}
