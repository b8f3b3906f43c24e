//! Child runs (issue 13, part 3): a parent starts children owned by its identity under keys
//! derived from it, joins them parked in the store, lists them in its status, and a crash
//! between a child's end and the parent's wait neither loses the output nor runs the child
//! again. Cancelling a parent cancels its children; stopping it does not.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use taskflow::prelude::*;
use taskflow::testing::TempStore;
use taskflow::{SubscribeFrom, TaskState, UserContext, UserId, Waiting};

use crate::support::{assert_gapless, until, wait_status};

/// How often each child body ran, by tag.
static RAN: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

fn ran(tag: &str) -> u32 {
    RAN.lock()
        .unwrap()
        .as_ref()
        .and_then(|m| m.get(tag).copied())
        .unwrap_or(0)
}

fn count(tag: &str) {
    *RAN.lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .entry(tag.to_owned())
        .or_default() += 1;
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Job {
    tag: String,
    n: u32,
    /// Wait for the signal `go` before finishing.
    gated: bool,
    fail: bool,
}

fn job(tag: &str, n: u32, gated: bool) -> Job {
    Job {
        tag: tag.to_owned(),
        n,
        gated,
        fail: false,
    }
}

/// A child: counts its body's runs, maybe waits for `go`, returns `n × 10` (or fails).
#[task(name = "child-job", max_attempts = 1)]
pub async fn child_job(ctx: TaskContext<NoEvents>, job: Job) -> Result<u32, TaskError> {
    let tag = format!("{}-{}", job.tag, job.n);
    ctx.step("work", || async {
        count(&tag);
        Ok::<_, TaskError>(())
    })
    .await?;
    if job.gated {
        let () = ctx.wait_signal("go").await?;
    }
    if job.fail {
        return Err(TaskError::permanent("the child gave up").with_code("child_gave_up"));
    }
    Ok(job.n * 10)
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Family {
    tag: String,
    gated: bool,
    /// Wait for the signal `proceed` between starting the children and joining them.
    pause: bool,
    fail_second: bool,
}

/// A parent: starts two children, maybe pauses, joins them.
#[task(name = "parent-job", max_attempts = 3)]
pub async fn parent_job(ctx: TaskContext<NoEvents>, f: Family) -> Result<Vec<u32>, TaskError> {
    let first = ctx.start_child(child_job, job(&f.tag, 1, f.gated)).await?;
    let mut second = job(&f.tag, 2, f.gated);
    second.fail = f.fail_second;
    let second = ctx.start_child(child_job, second).await?;
    if f.pause {
        let () = ctx.wait_signal("proceed").await?;
    }
    ctx.join_all(&[first, second]).await
}

fn family(tag: &str, gated: bool, pause: bool) -> Family {
    Family {
        tag: tag.to_owned(),
        gated,
        pause,
        fail_second: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_joins_its_children_parked_and_lists_them_in_its_status() {
    let store = TempStore::new();
    // One slot: the parent frees it while it waits, or its children could never run.
    let flow = store
        .builder()
        .max_concurrent(1)
        .register(parent_job)
        .register(child_job)
        .build()
        .await
        .unwrap();
    let alice = UserContext::new(UserId::new("alice").unwrap());
    let as_alice = flow.as_user(&alice);
    let run = as_alice
        .start(parent_job, family("join", true, false))
        .await
        .unwrap();
    let ik = run.idempotency_key.clone();
    until("the parent waits for its children", async || {
        as_alice.status(&ik).await.unwrap().waiting == Some(Waiting::Children)
    })
    .await;
    let status = as_alice.status(&ik).await.unwrap();
    assert_eq!(status.children.len(), 2, "{status:?}");
    assert!(status.children.iter().all(|c| c.task == "child-job"));
    // The children are alice's (another owner does not see them) and wait for `go`.
    let bob = UserContext::new(UserId::new("bob").unwrap());
    for child in &status.children {
        let ik = &child.idempotency_key;
        until("the child waits for go", async || {
            as_alice
                .status(ik)
                .await
                .unwrap()
                .waiting
                .as_ref()
                .and_then(Waiting::signal)
                == Some("go")
        })
        .await;
        assert!(flow.as_user(&bob).status(ik).await.is_err());
    }
    for child in &status.children {
        as_alice
            .signal(&child.idempotency_key, "go", serde_json::Value::Null)
            .await
            .unwrap();
    }
    let out = tokio::time::timeout(Duration::from_secs(20), as_alice.wait(&run))
        .await
        .expect("the last child to end wakes the parent")
        .unwrap();
    assert_eq!(out, vec![10, 20]);
    assert_eq!((ran("join-1"), ran("join-2")), (1, 1));
    let status = as_alice.status(&ik).await.unwrap();
    assert!(
        status
            .children
            .iter()
            .all(|c| c.status == Some(TaskState::Completed))
    );
    let mut sub = as_alice.subscribe(&ik, SubscribeFrom::Start).await.unwrap();
    let mut events = Vec::new();
    while let Some(e) = sub.next().await {
        events.push(e.unwrap());
    }
    assert_gapless(&events, 1);
    let waits: Vec<(&str, serde_json::Value)> = events
        .iter()
        .filter(|e| e.name.starts_with("wait"))
        .map(|e| (e.name.as_str(), e.data.clone()))
        .collect();
    assert_eq!(
        waits,
        [
            ("waiting", serde_json::json!({"kind": "children"})),
            ("wait_ended", serde_json::json!({"kind": "children"})),
        ]
    );
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_a_childs_end_and_the_parents_wait_keeps_the_output_and_runs_no_child_again()
 {
    let store = TempStore::new();
    let build = || {
        store
            .builder()
            .register(parent_job)
            .register(child_job)
            .build()
    };
    let flow = build().await.unwrap();
    let run = flow
        .start(parent_job, family("crash", false, true))
        .await
        .unwrap();
    let ik = run.idempotency_key.clone();
    // Both children end while the parent waits for `proceed`, before its join.
    until("the children ended", async || {
        let status = flow.status(&ik).await.unwrap();
        status.children.len() == 2
            && status
                .children
                .iter()
                .all(|c| c.status == Some(TaskState::Completed))
    })
    .await;
    let children: Vec<_> = flow
        .status(&ik)
        .await
        .unwrap()
        .children
        .into_iter()
        .map(|c| c.idempotency_key)
        .collect();
    store.crash(&flow).await;
    let flow = build().await.unwrap();
    flow.signal(&ik, "proceed", serde_json::Value::Null)
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), flow.wait(&run))
        .await
        .expect("the parent finished after the restart")
        .unwrap();
    assert_eq!(out, vec![10, 20]);
    assert_eq!(
        (ran("crash-1"), ran("crash-2")),
        (1, 1),
        "a child ran again"
    );
    // The replay re-attached to the same children: still two, the same keys.
    let status = flow.status(&ik).await.unwrap();
    let again: Vec<_> = status
        .children
        .into_iter()
        .map(|c| c.idempotency_key)
        .collect();
    assert_eq!(again, children);
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_the_parent_is_parked_on_its_children_still_joins_them() {
    let store = TempStore::new();
    let build = || {
        store
            .builder()
            .register(parent_job)
            .register(child_job)
            .build()
    };
    let flow = build().await.unwrap();
    let run = flow
        .start(parent_job, family("parked", true, false))
        .await
        .unwrap();
    let ik = run.idempotency_key.clone();
    until("parked on its children", async || {
        flow.status(&ik).await.unwrap().waiting == Some(Waiting::Children)
    })
    .await;
    let children = flow.status(&ik).await.unwrap().children;
    store.crash(&flow).await;
    let flow = build().await.unwrap();
    for child in &children {
        let ik = &child.idempotency_key;
        until("the child waits for go again", async || {
            flow.status(ik).await.unwrap().waiting.is_some()
        })
        .await;
        flow.signal(ik, "go", serde_json::Value::Null)
            .await
            .unwrap();
    }
    let out = tokio::time::timeout(Duration::from_secs(20), flow.wait(&run))
        .await
        .expect("woken by its children after the restart")
        .unwrap();
    assert_eq!(out, vec![10, 20]);
    assert_eq!((ran("parked-1"), ran("parked-2")), (1, 1));
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_parent_cancels_its_children_and_a_failed_child_fails_the_join() {
    let store = TempStore::new();
    let flow = store
        .builder()
        .register(parent_job)
        .register(child_job)
        .build()
        .await
        .unwrap();
    // Cancel: the parent and both children (waiting for `go`) end cancelled.
    let run = flow
        .start(parent_job, family("cancel", true, false))
        .await
        .unwrap();
    let ik = run.idempotency_key.clone();
    until("parked on its children", async || {
        flow.status(&ik).await.unwrap().waiting == Some(Waiting::Children)
    })
    .await;
    // A stop leaves the children alone.
    flow.stop(&ik, Some("pause")).await.unwrap();
    for child in flow.status(&ik).await.unwrap().children {
        let state = flow.status(&child.idempotency_key).await.unwrap().status;
        assert_eq!(state, TaskState::Running, "a stop reached a child");
    }
    flow.cancel(&ik, Some("no longer needed")).await.unwrap();
    let status = flow.status(&ik).await.unwrap();
    assert_eq!(status.status, TaskState::Cancelled);
    for child in &status.children {
        let child = flow.status(&child.idempotency_key).await.unwrap();
        assert_eq!(child.status, TaskState::Cancelled);
        assert_eq!(child.cancel_reason.as_deref(), Some("parent cancelled"));
    }
    // A failed child: the join fails with `child_failed`, naming the child's error.
    let mut f = family("fail", false, false);
    f.fail_second = true;
    let run = flow.start(parent_job, f).await.unwrap();
    let status = wait_status(&flow, &run.idempotency_key, |s| s == TaskState::Failed).await;
    let error = status.error.unwrap();
    assert_eq!(error.code, "child_failed");
    assert!(error.message.contains("the child gave up"), "{error:?}");
    assert_eq!(
        status.failed_attempts, 1,
        "a child's failure is not retried"
    );
    flow.shutdown().await.unwrap();
}
