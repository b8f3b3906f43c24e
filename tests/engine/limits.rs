//! Admission limits, the queue bound, payload limits, registration and retention.

use std::time::Duration;

use taskflow::testing::TempStore;
use taskflow::{
    BuildError, ControlError, Environment, ListFilter, ManualClock, PayloadKind, StartError,
    SubscribeFrom, TaskState, Timestamp, UserContext, UserId, WaitError,
};

use crate::support::*;

fn held(tag: &str) -> Script {
    let mut s = Script::new(tag);
    s.hold = true;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_concurrency_limit_queues_in_created_and_the_queue_is_bounded() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir)
        .max_concurrent(2)
        .queue_limit(1)
        .build()
        .await
        .unwrap();
    let a = flow.start(scripted, held("lim-g-a")).await.unwrap();
    let b = flow.start(scripted, held("lim-g-b")).await.unwrap();
    let c = flow.start(scripted, held("lim-g-c")).await.unwrap();
    wait_status(&flow, &a.idempotency_key, |s| s == TaskState::Running).await;
    wait_status(&flow, &b.idempotency_key, |s| s == TaskState::Running).await;
    assert_eq!(
        flow.status(&c.idempotency_key).await.unwrap().status,
        TaskState::Created
    );
    match flow.start(scripted, held("lim-g-d")).await {
        Err(StartError::QueueFull { limit: 1 }) => {}
        other => panic!("{other:?}"),
    }
    // Attaching to a queued run is not a new admission.
    assert!(
        flow.start(scripted, held("lim-g-c"))
            .await
            .unwrap()
            .attached
    );
    probe("lim-g-a").release();
    flow.wait(&a).await.unwrap();
    wait_status(&flow, &c.idempotency_key, |s| s == TaskState::Running).await;
    for tag in ["lim-g-b", "lim-g-c"] {
        probe(tag).release();
    }
    flow.wait(&c).await.unwrap();
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_concurrency_limit_does_not_apply_to_the_service() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir)
        .max_concurrent_per_user(1)
        .build()
        .await
        .unwrap();
    let ann = flow.as_user(&UserContext::new(UserId::new("ann").unwrap()));
    let a1 = ann.start(scripted, held("lim-u-a1")).await.unwrap();
    let a2 = ann.start(scripted, held("lim-u-a2")).await.unwrap();
    let s1 = flow.start(scripted, held("lim-u-s1")).await.unwrap();
    let s2 = flow.start(scripted, held("lim-u-s2")).await.unwrap();
    wait_status(&flow, &s1.idempotency_key, |s| s == TaskState::Running).await;
    wait_status(&flow, &s2.idempotency_key, |s| s == TaskState::Running).await;
    assert_eq!(
        ann.status(&a1.idempotency_key).await.unwrap().status,
        TaskState::Running
    );
    assert_eq!(
        ann.status(&a2.idempotency_key).await.unwrap().status,
        TaskState::Created
    );
    probe("lim-u-a1").release();
    ann.wait(&a1).await.unwrap();
    probe("lim-u-a2").release();
    ann.wait(&a2).await.unwrap();
    for tag in ["lim-u-s1", "lim-u-s2"] {
        probe(tag).release();
    }
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_rate_limit_says_when_to_retry_and_attaching_is_free() {
    let dir = TempStore::new();
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let flow = fast_builder(&dir)
        .clock(clock.clone())
        .start_rate_per_minute_per_user(2)
        .build()
        .await
        .unwrap();
    let ann = flow.as_user(&UserContext::new(UserId::new("ann").unwrap()));
    ann.start(scripted, Script::new("lim-r-1")).await.unwrap();
    clock.advance(Duration::from_secs(20));
    ann.start(scripted, Script::new("lim-r-2")).await.unwrap();
    match ann.start(scripted, Script::new("lim-r-3")).await {
        Err(StartError::RateLimited { retry_after }) => {
            assert_eq!(retry_after, Duration::from_secs(40));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        ann.start(scripted, Script::new("lim-r-1"))
            .await
            .unwrap()
            .attached
    );
    flow.start(scripted, Script::new("lim-r-3"))
        .await
        .expect("service has its own budget");
    clock.advance(Duration::from_secs(41));
    ann.start(scripted, Script::new("lim-r-3")).await.unwrap();
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_limits_refuse_and_write_nothing() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir)
        .payload_limit(2_000)
        .build()
        .await
        .unwrap();

    let mut big_input = Script::new("lim-p-input");
    big_input.tag.push_str(&"x".repeat(2_000));
    match flow.start(scripted, big_input).await {
        Err(StartError::PayloadTooLarge(e)) => {
            assert_eq!(e.kind, PayloadKind::Input);
            assert!(e.to_string().contains("payload_limit"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        flow.list(ListFilter::all()).await.unwrap().is_empty(),
        "nothing written"
    );

    for (tag, edit) in [
        (
            "lim-p-step",
            (|s: &mut Script| s.step_bytes = 3_000) as fn(&mut Script),
        ),
        ("lim-p-event", |s: &mut Script| s.event_bytes = 3_000),
        ("lim-p-output", |s: &mut Script| s.output_bytes = 3_000),
    ] {
        let mut s = Script::new(tag);
        s.steps = 1;
        edit(&mut s);
        let run = flow.start(scripted, s).await.unwrap();
        match flow.wait(&run).await {
            Err(WaitError::Failed(e)) => assert_eq!(e.code, "payload_too_large", "{tag}"),
            other => panic!("{tag}: {other:?}"),
        }
        let events = all_events(&flow, &run.idempotency_key, SubscribeFrom::Start).await;
        let names: Vec<_> = events.iter().map(|e| e.name.as_str()).collect();
        let expected: &[&str] = if tag == "lim-p-event" {
            &["failed"]
        } else {
            &["tick", "failed"]
        };
        assert_eq!(
            names, expected,
            "{tag}: the oversized payload was not written"
        );
        // Failed at once: a too-large payload is not retried.
        assert_eq!(
            probe(tag)
                .attempts
                .load(std::sync::atomic::Ordering::SeqCst),
            1,
            "{tag}"
        );
    }
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_registration_fails_in_production_and_replaces_in_development() {
    let dir = TempStore::new();
    let err = dir
        .builder()
        .environment(Environment::Production)
        .register(scripted)
        .register(scripted)
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, BuildError::DuplicateTask(ref n) if n == "scripted"),
        "{err}"
    );
    let flow = dir
        .builder()
        .environment(Environment::Development)
        .register(scripted)
        .register(scripted)
        .build()
        .await
        .unwrap();
    flow.shutdown().await.unwrap();
}

#[test]
fn environment_names() {
    assert_eq!(Environment::parse(None).unwrap(), Environment::Development);
    assert_eq!(
        Environment::parse(Some("production")).unwrap(),
        Environment::Production
    );
    assert_eq!(
        Environment::parse(Some("development")).unwrap(),
        Environment::Development
    );
    assert!(matches!(
        Environment::parse(Some("prod")),
        Err(BuildError::InvalidEnvironment(v)) if v == "prod"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_old_runs_by_the_clock_and_keys_keep_their_seqs() {
    let dir = TempStore::new();
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let flow = fast_builder(&dir)
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let mut done = Script::new("lim-gc-done");
    done.steps = 2;
    let finished = flow.start(scripted, done.clone()).await.unwrap();
    flow.wait(&finished).await.unwrap();
    let mut paused = held("lim-gc-suspended");
    paused.steps = 1;
    let suspended = flow.start(scripted, paused).await.unwrap();
    probe("lim-gc-suspended").wait_progress(1).await;
    flow.stop(&suspended.idempotency_key, None).await.unwrap();

    clock.advance(Duration::from_secs(23 * 3600));
    assert_eq!(flow.collect_garbage().await.unwrap(), 0, "too young");
    clock.advance(Duration::from_secs(2 * 3600));
    assert_eq!(flow.collect_garbage().await.unwrap(), 1);
    assert!(matches!(
        flow.status(&finished.idempotency_key).await,
        Err(ControlError::NotFound)
    ));
    assert!(
        flow.status(&suspended.idempotency_key).await.is_ok(),
        "suspended kept 7 days"
    );
    clock.advance(Duration::from_secs(7 * 24 * 3600));
    assert_eq!(flow.collect_garbage().await.unwrap(), 1);
    assert!(flow.status(&suspended.idempotency_key).await.is_err());
    assert_eq!(flow.metrics().runs_collected, 2);

    // A new run under a collected key continues its sequence numbers.
    let again = flow.start(scripted, done).await.unwrap();
    assert!(!again.attached);
    let events = all_events(&flow, &again.idempotency_key, SubscribeFrom::Start).await;
    assert_eq!(
        events[0].seq.get(),
        4,
        "seqs 1..=3 belonged to the collected run"
    );
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_retention_pass_compacts_the_file() {
    let dir = taskflow::testing::TempDataDir::new();
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let flow = fast(dir.builder())
        .clock(clock.clone())
        .compact_after(20)
        .build()
        .await
        .unwrap();
    let file = dir.path().join("taskflow.redb");
    let mut runs = Vec::new();
    for k in 0..40 {
        let mut s = Script::new(&format!("lim-compact-{k}"));
        s.steps = 1;
        s.step_bytes = 200_000;
        runs.push(flow.start(scripted, s).await.unwrap());
    }
    for run in &runs {
        flow.wait(run).await.unwrap();
    }
    let before = std::fs::metadata(&file).unwrap().len();
    clock.advance(Duration::from_secs(25 * 3600));
    assert_eq!(flow.collect_garbage().await.unwrap(), 40);
    let after = std::fs::metadata(&file).unwrap().len();
    println!("file: {before} bytes before retention, {after} after compaction");
    assert!(
        after * 2 < before,
        "compaction gave space back: {before} -> {after}"
    );
    // Still a working store.
    let mut s = Script::new("lim-compact-after");
    s.steps = 1;
    let run = flow.start(scripted, s).await.unwrap();
    flow.wait(&run).await.unwrap();
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_never_deletes_a_run_that_changed_after_its_scan() {
    use std::sync::Arc;
    use taskflow::store::{Committed, RedbStore, Scan, Store, Write, WriteBatch};
    let dir = taskflow::testing::TempDataDir::new();
    let path = dir.path().to_owned();
    let store = Arc::new(
        tokio::task::spawn_blocking(move || RedbStore::open(path))
            .await
            .unwrap()
            .unwrap(),
    );
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let flow = fast(dir.builder())
        .store(store.clone())
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let mut paused = held("lim-gc-race");
    paused.steps = 1;
    let run = flow.start(scripted, paused).await.unwrap();
    probe("lim-gc-race").wait_progress(1).await;
    flow.stop(&run.idempotency_key, None).await.unwrap();
    clock.advance(Duration::from_secs(8 * 24 * 3600));

    // What a retention pass sees: the suspended run, old enough to go.
    let seen = store
        .scan(Scan::default())
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.id == run.task_id)
        .unwrap();
    assert_eq!(seen.status, TaskState::Suspended);
    // Between the scan and the delete, the run is resumed.
    flow.resume(&run.idempotency_key).await.unwrap();
    let delete = Write::DeleteRun {
        task: seen.id,
        if_unchanged: Some((seen.status, seen.updated_at)),
    };
    let committed = store.commit(WriteBatch::new(vec![delete])).await.unwrap();
    assert_eq!(committed, vec![Committed::Kept]);
    let status = flow.status(&run.idempotency_key).await.unwrap();
    assert!(
        matches!(status.status, TaskState::Created | TaskState::Running),
        "the resumed run was deleted: {status:?}"
    );
    // The pass itself keeps it too (it is no longer old and suspended), then the run ends.
    assert_eq!(flow.collect_garbage().await.unwrap(), 0);
    probe("lim-gc-race").release();
    wait_status(&flow, &run.idempotency_key, |s| s == TaskState::Completed).await;
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_start_rate_limit_holds_for_every_owner_and_ignores_attaches() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir)
        .start_rate_per_minute(2)
        .build()
        .await
        .unwrap();
    let ann = taskflow::UserContext::new(taskflow::UserId::new("ann").unwrap());
    let first = flow.start(scripted, Script::new("rate-g-1")).await.unwrap();
    flow.as_user(&ann)
        .start(scripted, Script::new("rate-g-2"))
        .await
        .unwrap();
    // A third new run, by anyone, is over the global rate.
    for result in [
        flow.start(scripted, Script::new("rate-g-3")).await,
        flow.as_user(&ann)
            .start(scripted, Script::new("rate-g-4"))
            .await,
    ] {
        match result {
            Err(StartError::RateLimited { retry_after }) => {
                assert!(retry_after <= Duration::from_secs(60) && !retry_after.is_zero());
            }
            other => panic!("expected the global rate limit, got {other:?}"),
        }
    }
    // Attaching to an existing run does not count against the limit.
    let again = flow.start(scripted, Script::new("rate-g-1")).await.unwrap();
    assert!(again.attached);
    assert_eq!(again.task_id, first.task_id);
    flow.shutdown().await.unwrap();
}
