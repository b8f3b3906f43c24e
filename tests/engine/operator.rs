//! `TaskFlow::operator`: every owner's runs, on either store: listing newest first with a
//! cursor, filters by owner, state, task and key prefix, counts by state, a run in full with
//! its step timings, and control of another owner's run.

use std::collections::HashSet;

use taskflow::operator::RunFilter;
use taskflow::testing::TempStore;
use taskflow::{TaskState, UserContext, UserId};

use crate::support::*;

fn user(id: &str) -> UserContext {
    UserContext::new(UserId::new(id).unwrap())
}

fn filter() -> RunFilter {
    RunFilter::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_lists_filters_counts_and_steers_every_owners_runs() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir).build().await.unwrap();
    let op = flow.operator();
    let mut done = Vec::new();
    for (who, n) in [("ann", 3), ("ben", 2)] {
        let scope = flow.as_user(&user(who));
        for i in 0..n {
            let mut s = Script::new(&format!("op-{who}-{i}"));
            s.steps = 1;
            let run = scope.start(scripted, s).await.unwrap();
            scope.wait(&run).await.unwrap();
            done.push(run.idempotency_key);
        }
    }
    let mut s = Script::new("op-held");
    s.steps = 2;
    s.step_sleep_ms = 5;
    s.hold = true;
    let ben = flow.as_user(&user("ben"));
    let held = ben.start(scripted, s).await.unwrap();
    probe("op-held").wait_progress(2).await;

    // Every owner's runs, newest first, two per page; the pages cover each run once even
    // with a run started between them.
    let mut f = filter();
    f.limit = Some(2);
    let first = op.list(f.clone()).await.unwrap();
    assert_eq!(first.runs[0].idempotency_key, held.idempotency_key);
    let mut seen: Vec<_> = first
        .runs
        .iter()
        .map(|r| r.idempotency_key.clone())
        .collect();
    let mut late = Script::new("op-late");
    late.steps = 1;
    let late = flow.start(scripted, late).await.unwrap();
    flow.wait(&late).await.unwrap();
    let mut next = first.next;
    while let Some(cursor) = next {
        let mut f = f.clone();
        f.before = Some(cursor);
        let page = op.list(f).await.unwrap();
        assert!(page.runs.len() <= 2);
        seen.extend(page.runs.iter().map(|r| r.idempotency_key.clone()));
        next = page.next;
    }
    let mut expected: HashSet<_> = done.iter().cloned().collect();
    expected.insert(held.idempotency_key.clone());
    assert_eq!(seen.len(), expected.len(), "{seen:?}");
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), expected);

    // Filters.
    let mut f = filter();
    f.owner = Some(Some(UserId::new("ann").unwrap()));
    assert_eq!(op.list(f).await.unwrap().runs.len(), 3);
    let mut f = filter();
    f.owner = Some(None);
    assert_eq!(
        op.list(f).await.unwrap().runs.len(),
        1,
        "the service's late run"
    );
    let mut f = filter();
    f.states = vec![TaskState::Running];
    let running = op.list(f).await.unwrap().runs;
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].idempotency_key, held.idempotency_key);
    let mut f = filter();
    f.states = vec![TaskState::Completed];
    f.owner = Some(Some(UserId::new("ben").unwrap()));
    assert_eq!(op.list(f).await.unwrap().runs.len(), 2);
    let mut f = filter();
    f.task = Some("no-such-task".into());
    assert!(op.list(f).await.unwrap().runs.is_empty());
    let prefix = done[1].as_str()[..4].to_owned();
    let mut f = filter();
    f.key_prefix = Some(prefix.clone());
    let found = op.list(f).await.unwrap().runs;
    assert!(found.iter().any(|r| r.idempotency_key == done[1]));
    assert!(
        found
            .iter()
            .all(|r| r.idempotency_key.as_str().starts_with(&prefix))
    );

    let counts = op.counts().await.unwrap();
    assert_eq!(counts[&TaskState::Completed], 6);
    assert_eq!(counts[&TaskState::Running], 1);
    assert_eq!(counts.len(), 6);

    // A run in full: its steps with their attempt and time, executed by attempt 1.
    let detail = op.run(&held.idempotency_key).await.unwrap();
    assert_eq!(
        detail.status.owner.as_ref().map(UserId::as_str),
        Some("ben")
    );
    assert_eq!(detail.input["tag"], "op-held");
    let keys: Vec<&str> = detail.steps.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys, ["work#0", "work#1"]);
    for step in &detail.steps {
        assert_eq!((step.origin, step.attempt), ("executed", Some(1)));
        assert!(step.duration_ms.unwrap() >= 5, "{step:?}");
        assert!(step.at.is_some());
    }
    assert_eq!(
        op.step_value(&held.idempotency_key, "work#1")
            .await
            .unwrap(),
        serde_json::json!(1001)
    );
    assert!(
        op.step_value(&held.idempotency_key, "work#7")
            .await
            .is_err()
    );

    // Control of another owner's run, which its owner sees.
    let stopped = op.stop(&held.idempotency_key, Some("ops")).await.unwrap();
    assert_eq!(stopped.status, TaskState::Suspended);
    let theirs = ben.status(&held.idempotency_key).await.unwrap();
    assert_eq!(theirs.suspended_reason.as_deref(), Some("ops"));
    let cancelled = op.cancel(&held.idempotency_key, None).await.unwrap();
    assert_eq!(cancelled.status, TaskState::Cancelled);
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_failed_attempts_are_kept_with_their_errors() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir).build().await.unwrap();
    let mut s = Script::new("op-retries");
    s.steps = 1;
    s.fail_times = 2;
    let run = flow.start(scripted, s).await.unwrap();
    flow.wait(&run).await.unwrap();
    let detail = flow.operator().run(&run.idempotency_key).await.unwrap();
    assert_eq!(detail.status.attempt, 3);
    let attempts: Vec<(u32, &str, &str)> = detail
        .attempts
        .iter()
        .map(|a| (a.attempt, a.code.as_str(), a.message.as_str()))
        .collect();
    assert_eq!(
        attempts,
        [
            (1, "task_error", "scripted failure 1"),
            (2, "task_error", "scripted failure 2")
        ]
    );
    assert!(detail.attempts.iter().all(|a| a.at.is_some()));
    // Attempt 3 replayed the step attempt 1 ran.
    assert_eq!(detail.steps[0].origin, "replayed");
    assert_eq!(detail.steps[0].attempt, Some(1));
    flow.shutdown().await.unwrap();
}
