//! The dedup table of SPEC §3, one test per cell, and the idempotency key's properties.

use taskflow::testing::TempStore;
use taskflow::{
    AccessToken, ControlError, ExecuteMode, IdempotencyKey, StartOptions, SubscribeFrom, TaskState,
    UserContext, UserId,
};

use crate::support::*;

fn user(id: &str) -> UserContext {
    UserContext::new(UserId::new(id).unwrap()).with_access_token(AccessToken::new("t"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_run_attaches() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir).max_concurrent(1).build().await.unwrap();
    let mut busy = Script::new("dedup-created-busy");
    busy.hold = true;
    flow.start(scripted, busy).await.unwrap();
    let queued = Script::new("dedup-created");
    let a = flow.start(scripted, queued.clone()).await.unwrap();
    assert_eq!(
        flow.status(&a.idempotency_key).await.unwrap().status,
        TaskState::Created
    );
    let b = flow.start(scripted, queued).await.unwrap();
    assert!(!a.attached && b.attached);
    assert_eq!(a.task_id, b.task_id);
    assert_eq!(
        flow.status(&a.idempotency_key).await.unwrap().status,
        TaskState::Created
    );
    probe("dedup-created-busy").release();
    flow.wait(&b).await.unwrap();
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_run_attaches() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir).build().await.unwrap();
    let mut s = Script::new("dedup-running");
    s.steps = 1;
    s.hold = true;
    let a = flow.start(scripted, s.clone()).await.unwrap();
    probe("dedup-running").wait_progress(1).await;
    let b = flow.start(scripted, s).await.unwrap();
    assert!(b.attached);
    assert_eq!(a.task_id, b.task_id);
    assert_eq!(
        probe("dedup-running")
            .attempts
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    probe("dedup-running").release();
    flow.wait(&a).await.unwrap();
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_run_attaches_and_resumes_but_subscribe_does_not() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir).build().await.unwrap();
    let mut s = Script::new("dedup-suspended");
    s.steps = 2;
    s.hold = true;
    let a = flow.start(scripted, s.clone()).await.unwrap();
    let p = probe("dedup-suspended");
    p.wait_progress(2).await;
    flow.stop(&a.idempotency_key, Some("pause")).await.unwrap();
    // GET re-attach: replays, stays suspended.
    let mut sub = flow
        .subscribe(&a.idempotency_key, SubscribeFrom::Start)
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(sub.next().await.unwrap().unwrap().name);
    }
    assert_eq!(seen, ["tick", "tick", "suspended"]);
    assert_eq!(
        flow.status(&a.idempotency_key).await.unwrap().status,
        TaskState::Suspended
    );
    // POST / start: attaches and resumes.
    let b = flow.start(scripted, s).await.unwrap();
    assert!(b.attached);
    assert_eq!(a.task_id, b.task_id);
    wait_status(&flow, &a.idempotency_key, |s| s == TaskState::Running).await;
    p.release();
    let out = flow.wait(&b).await.unwrap();
    assert_eq!(
        out.values,
        vec![1, 1001],
        "steps replayed from the first attempt"
    );
    assert_eq!(p.executions_of(0), 1);
    assert_eq!(p.executions_of(1), 1);
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_run_attaches_and_replays() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir).build().await.unwrap();
    let mut s = Script::new("dedup-completed");
    s.steps = 3;
    let a = flow.start(scripted, s.clone()).await.unwrap();
    flow.wait(&a).await.unwrap();
    let b = flow.start(scripted, s).await.unwrap();
    assert!(b.attached);
    assert_eq!(a.task_id, b.task_id);
    let events = all_events(&flow, &b.idempotency_key, SubscribeFrom::Start).await;
    assert_eq!(events.len(), 4);
    assert_eq!(events[3].name, "completed");
    assert_gapless(&events, 1);
    assert_eq!(
        probe("dedup-completed")
            .attempts
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    flow.shutdown().await.unwrap();
}

async fn finished_then_resubmit(tag: &str, cancel: bool, mode: ExecuteMode) -> (bool, u64, u64) {
    let dir = TempStore::new();
    let flow = fast_builder(&dir).build().await.unwrap();
    let mut s = Script::new(tag);
    s.steps = 1;
    if cancel {
        s.hold = true;
    } else {
        s.fail_times = 10;
        s.permanent = true;
    }
    let opts = StartOptions::new().execute_mode(mode);
    let a = flow
        .start_with(scripted, s.clone(), opts.clone())
        .await
        .unwrap();
    if cancel {
        probe(tag).wait_progress(1).await;
        flow.cancel(&a.idempotency_key, Some("no")).await.unwrap();
    } else {
        assert!(flow.wait(&a).await.is_err());
    }
    let old_last = flow
        .status(&a.idempotency_key)
        .await
        .unwrap()
        .last_seq
        .get();
    let b = flow.start_with(scripted, s, opts).await.unwrap();
    let new_first = if b.attached {
        0
    } else {
        probe(tag).release();
        let events = all_events(&flow, &b.idempotency_key, SubscribeFrom::Start).await;
        events[0].seq.get()
    };
    assert_eq!(b.attached, a.task_id == b.task_id);
    flow.shutdown().await.unwrap();
    (b.attached, old_last, new_first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_run_at_least_once_starts_new_run_with_continuing_seqs() {
    let (attached, old_last, new_first) =
        finished_then_resubmit("dedup-failed-alo", false, ExecuteMode::AtLeastOnce).await;
    assert!(!attached);
    assert_eq!(new_first, old_last + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_run_at_most_once_attaches() {
    let (attached, _, _) =
        finished_then_resubmit("dedup-failed-amo", false, ExecuteMode::AtMostOnce).await;
    assert!(attached);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_run_at_least_once_starts_new_run() {
    let (attached, old_last, new_first) =
        finished_then_resubmit("dedup-cancelled-alo", true, ExecuteMode::AtLeastOnce).await;
    assert!(!attached);
    assert_eq!(new_first, old_last + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_run_at_most_once_attaches() {
    let (attached, _, _) =
        finished_then_resubmit("dedup-cancelled-amo", true, ExecuteMode::AtMostOnce).await;
    assert!(attached);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_ignores_json_key_order_and_omitted_defaults() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir).build().await.unwrap();
    let a = flow
        .start_json(
            "scripted",
            serde_json::json!({"tag": "dedup-json", "steps": 1}),
            StartOptions::new(),
        )
        .await
        .unwrap();
    let b = flow
        .start_json(
            "scripted",
            serde_json::from_str(r#"{"steps":1,"hold":false,"tag":"dedup-json","fail_times":0}"#)
                .unwrap(),
            StartOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!(a.idempotency_key, b.idempotency_key);
    assert!(b.attached, "second submission attaches");
    // The typed API computes the same key.
    let mut s = Script::new("dedup-json");
    s.steps = 1;
    assert_eq!(
        flow.start(scripted, s).await.unwrap().idempotency_key,
        a.idempotency_key
    );
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_owners_key_behaves_like_an_unknown_key() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir).build().await.unwrap();
    let ann = flow.as_user(&user("ann"));
    let bob = flow.as_user(&user("bob"));
    let mut s = Script::new("dedup-owner");
    s.steps = 1;
    let run = ann.start(scripted, s.clone()).await.unwrap();
    ann.wait(&run).await.unwrap();
    let ik = &run.idempotency_key;
    let unknown = IdempotencyKey::parse(&"A".repeat(43)).unwrap();

    let describe = |r: Result<taskflow::TaskStatus, ControlError>| match r {
        Err(e @ ControlError::NotFound) => e.to_string(),
        other => panic!("expected NotFound, got {other:?}"),
    };
    let reference = describe(bob.status(&unknown).await);
    assert_eq!(describe(bob.status(ik).await), reference);
    assert_eq!(describe(flow.status(ik).await), reference);
    assert_eq!(describe(bob.stop(ik, None).await), reference);
    assert_eq!(describe(bob.resume(ik).await), reference);
    assert_eq!(describe(bob.cancel(ik, None).await), reference);
    assert!(matches!(
        bob.subscribe(ik, SubscribeFrom::Start).await,
        Err(ControlError::NotFound)
    ));
    assert!(matches!(
        bob.wait_json(ik).await,
        Err(taskflow::WaitError::NotFound)
    ));
    assert!(
        bob.list(taskflow::ListFilter::all())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        flow.list(taskflow::ListFilter::all())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ann.list(taskflow::ListFilter::all()).await.unwrap().len(),
        1
    );

    // Same input, other owners: other keys, separate runs.
    let bobs = bob.start(scripted, s.clone()).await.unwrap();
    let service = flow.start(scripted, s).await.unwrap();
    assert!(!bobs.attached && !service.attached);
    assert_ne!(&bobs.idempotency_key, ik);
    assert_ne!(service.idempotency_key, bobs.idempotency_key);
    flow.shutdown().await.unwrap();
}

/// A task whose runs are at most once, whatever a later caller asks for.
#[taskflow::task(name = "amo-fails", execute_mode = at_most_once, max_attempts = 1)]
async fn amo_fails(
    ctx: taskflow::TaskContext<taskflow::NoEvents>,
    tag: String,
) -> Result<(), taskflow::TaskError> {
    let _ = (ctx, tag);
    Err(taskflow::TaskError::new("always fails"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_finished_runs_recorded_mode_decides_not_the_callers_override() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir)
        .register(amo_fails)
        .build()
        .await
        .unwrap();
    let a = flow.start(amo_fails, "x".into()).await.unwrap();
    assert!(flow.wait(&a).await.is_err());
    // The task says at_most_once: an at_least_once override does not start a second run.
    let b = flow
        .start_with(
            amo_fails,
            "x".into(),
            StartOptions::new().execute_mode(ExecuteMode::AtLeastOnce),
        )
        .await
        .unwrap();
    assert!(b.attached, "the override bypassed the run's at_most_once");
    assert_eq!(b.task_id, a.task_id);
    // And a run started at_most_once by its caller keeps that mode for later callers.
    let mut s = Script::new("dedup-recorded-amo");
    s.fail_times = 10;
    s.permanent = true;
    let first = flow
        .start_with(
            scripted,
            s.clone(),
            StartOptions::new().execute_mode(ExecuteMode::AtMostOnce),
        )
        .await
        .unwrap();
    assert!(flow.wait(&first).await.is_err());
    let again = flow.start(scripted, s).await.unwrap();
    assert!(again.attached, "the recorded at_most_once was ignored");
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_pages_newest_first_and_shows_each_key_once() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir).build().await.unwrap();
    let ann = flow.as_user(&user("ann"));
    let mut keys = Vec::new();
    for k in 0..5 {
        let mut s = Script::new(&format!("page-{k}"));
        s.steps = 1;
        // The first key fails once for good and runs again: its older run is history.
        if k == 0 {
            s.fail_times = 1;
            s.permanent = true;
        }
        let run = ann.start(scripted, s).await.unwrap();
        let _ = ann.wait(&run).await;
        keys.push(run.idempotency_key);
    }
    let mut first = Script::new("page-0");
    first.steps = 1;
    first.fail_times = 1;
    first.permanent = true;
    let again = ann.start(scripted, first).await.unwrap();
    assert!(!again.attached, "a failed run's key starts a new run");
    ann.wait(&again).await.unwrap();
    let mut pages = Vec::new();
    let mut filter = taskflow::ListFilter::all().limit(2);
    loop {
        let page = ann.list(filter.clone()).await.unwrap();
        let last = page.last().map(|s| s.task_id);
        pages.push(
            page.iter()
                .map(|s| s.idempotency_key.clone())
                .collect::<Vec<_>>(),
        );
        match last {
            Some(last) if page.len() == 2 => {
                filter = taskflow::ListFilter::all().limit(2).before(last)
            }
            _ => break,
        }
    }
    let listed: Vec<_> = pages.concat();
    // Newest first: key 0's second run is the newest of all.
    let expected = vec![
        keys[0].clone(),
        keys[4].clone(),
        keys[3].clone(),
        keys[2].clone(),
        keys[1].clone(),
    ];
    assert_eq!(listed, expected, "pages {pages:?}");
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    flow.shutdown().await.unwrap();
}
