//! stop, resume and cancel: state committed at once, fencing, grace, reasons.

use std::sync::atomic::Ordering;
use std::time::Duration;

use taskflow::testing::TempStore;
use taskflow::{ControlError, SubscribeFrom, TaskState};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_commits_suspended_at_once_and_fences_the_attempt() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir).build().await.unwrap();
    let mut s = Script::new("ctl-stop");
    s.steps = 2;
    s.hold = true;
    s.step_after_stop = true;
    let run = flow.start(scripted, s).await.unwrap();
    let p = probe("ctl-stop");
    p.wait_progress(2).await;
    let status = flow
        .stop(&run.idempotency_key, Some("maintenance"))
        .await
        .unwrap();
    // Committed before stop() returned.
    assert_eq!(status.status, TaskState::Suspended);
    assert_eq!(status.suspended_reason.as_deref(), Some("maintenance"));
    let mut sub = flow
        .subscribe(&run.idempotency_key, SubscribeFrom::Start)
        .await
        .unwrap();
    let mut names = Vec::new();
    for _ in 0..3 {
        names.push(sub.next().await.unwrap().unwrap());
    }
    assert_eq!(names[2].name, "suspended");
    assert_eq!(names[2].data, serde_json::json!({"reason": "maintenance"}));
    // The handler saw cancelled() and its later step and emit were refused.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while p.after_stop.lock().unwrap().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(*p.after_stop.lock().unwrap(), ["stopped", "stopped"]);
    // Nothing was written after `suspended`.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        flow.status(&run.idempotency_key)
            .await
            .unwrap()
            .last_seq
            .get(),
        3
    );
    // Idempotent.
    assert_eq!(
        flow.stop(&run.idempotency_key, None).await.unwrap().status,
        TaskState::Suspended
    );
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_ignores_cancelled_is_dropped_after_the_grace() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir)
        .stop_grace(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let mut s = Script::new("ctl-ignore");
    s.steps = 1;
    s.hold = true;
    s.ignore_stop = true;
    let run = flow.start(scripted, s).await.unwrap();
    let p = probe("ctl-ignore");
    p.wait_progress(1).await;
    flow.stop(&run.idempotency_key, None).await.unwrap();
    assert!(!p.dropped.load(Ordering::SeqCst), "still inside the grace");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !p.dropped.load(Ordering::SeqCst) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "handler never dropped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_reruns_from_the_top_with_finished_steps_replayed() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir).build().await.unwrap();
    let mut s = Script::new("ctl-resume");
    s.steps = 3;
    s.hold = true;
    let run = flow.start(scripted, s).await.unwrap();
    let p = probe("ctl-resume");
    p.wait_progress(3).await;
    flow.stop(&run.idempotency_key, None).await.unwrap();
    let status = flow.resume(&run.idempotency_key).await.unwrap();
    assert!(matches!(
        status.status,
        TaskState::Created | TaskState::Running
    ));
    p.wait_progress(6).await;
    p.release();
    let out = flow.wait(&run).await.unwrap();
    assert_eq!(out.values, vec![1, 1001, 2001]);
    assert_eq!(p.attempts.load(Ordering::SeqCst), 2);
    for i in 0..3 {
        assert_eq!(p.executions_of(i), 1, "step {i} ran again");
    }
    let origins: Vec<_> = p.returned.lock().unwrap().iter().map(|r| r.2).collect();
    use taskflow::StepOrigin::{Executed, Replayed};
    assert_eq!(
        origins,
        [Executed, Executed, Executed, Replayed, Replayed, Replayed]
    );
    // Events: 3 ticks, suspended, then no duplicate ticks, then completed.
    let events = all_events(&flow, &run.idempotency_key, SubscribeFrom::Start).await;
    let names: Vec<_> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["tick", "tick", "tick", "suspended", "completed"]);
    assert_gapless(&events, 1);
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_is_terminal() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir).build().await.unwrap();
    let mut s = Script::new("ctl-cancel");
    s.steps = 1;
    s.hold = true;
    let run = flow.start(scripted, s).await.unwrap();
    probe("ctl-cancel").wait_progress(1).await;
    let status = flow
        .cancel(&run.idempotency_key, Some("user gave up"))
        .await
        .unwrap();
    assert_eq!(status.status, TaskState::Cancelled);
    // The cancellation's reason has its own field; the run is not suspended.
    assert_eq!(status.cancel_reason.as_deref(), Some("user gave up"));
    assert_eq!(status.suspended_reason, None);
    assert!(matches!(
        flow.resume(&run.idempotency_key).await,
        Err(ControlError::InvalidState {
            state: TaskState::Cancelled,
            ..
        })
    ));
    assert!(matches!(
        flow.stop(&run.idempotency_key, None).await,
        Err(ControlError::InvalidState { .. })
    ));
    assert_eq!(
        flow.cancel(&run.idempotency_key, None)
            .await
            .unwrap()
            .status,
        TaskState::Cancelled,
        "idempotent"
    );
    match flow.wait(&run).await {
        Err(taskflow::WaitError::Cancelled { reason }) => assert_eq!(reason, "user gave up"),
        other => panic!("{other:?}"),
    }
    let events = all_events(&flow, &run.idempotency_key, SubscribeFrom::Start).await;
    assert_eq!(events.last().unwrap().name, "cancelled");
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reasons_over_512_characters_are_rejected() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir).build().await.unwrap();
    let mut s = Script::new("ctl-reason");
    s.hold = true;
    let run = flow.start(scripted, s).await.unwrap();
    let long = "é".repeat(513);
    assert!(matches!(
        flow.stop(&run.idempotency_key, Some(&long)).await,
        Err(ControlError::ReasonTooLong { len: 513 })
    ));
    assert!(matches!(
        flow.cancel(&run.idempotency_key, Some(&long)).await,
        Err(ControlError::ReasonTooLong { .. })
    ));
    assert_ne!(
        flow.status(&run.idempotency_key).await.unwrap().status,
        TaskState::Suspended
    );
    let ok = "é".repeat(512);
    let status = flow.stop(&run.idempotency_key, Some(&ok)).await.unwrap();
    assert_eq!(status.suspended_reason.as_deref(), Some(ok.as_str()));
    flow.shutdown().await.unwrap();
}
