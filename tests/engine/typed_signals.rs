//! Typed signals and retried signals (issue 13, part 2): a task that declares a `#[signals]`
//! enum gets every signal checked against it when sent and receives them in arrival order
//! whatever their name; a signal sent with a sender's key is stored once however often it is
//! retried; the control actions' names are refused for every task.

use std::time::Duration;

use taskflow::prelude::*;
use taskflow::testing::TempStore;
use taskflow::{ControlError, Signals as _, Waiting};

#[signals]
#[derive(Debug, Clone, PartialEq)]
pub enum Approval {
    Approve {
        by: String,
    },
    Reject,
    #[signal(name = "note")]
    Comment(String),
}

/// Collects typed signals until a decision (approve or reject).
#[task(name = "reviewer", signals = Approval)]
pub async fn reviewer(ctx: TaskContext<NoEvents>, _doc: String) -> Result<Vec<String>, TaskError> {
    let mut seen = Vec::new();
    loop {
        match ctx.next_signal::<Approval>().await? {
            Approval::Comment(text) => seen.push(format!("note:{text}")),
            Approval::Approve { by } => {
                seen.push(format!("approve:{by}"));
                return Ok(seen);
            }
            Approval::Reject => {
                seen.push("reject".to_owned());
                return Ok(seen);
            }
        }
    }
}

/// Declares typed signals but waits for one by name: a programming error, said at once.
#[task(name = "confused", signals = Approval, max_attempts = 1)]
pub async fn confused(ctx: TaskContext<NoEvents>, _x: u32) -> Result<u32, TaskError> {
    let n: u32 = ctx.wait_signal("approve").await?;
    Ok(n)
}

/// Sums the `n` of three untyped `add` signals.
#[task(name = "adder")]
pub async fn adder(ctx: TaskContext<NoEvents>, _tag: String) -> Result<u64, TaskError> {
    let mut sum = 0;
    for _ in 0..3 {
        let v: serde_json::Value = ctx.wait_signal("add").await?;
        sum += v["n"].as_u64().unwrap_or(0);
    }
    Ok(sum)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_signals_arrive_in_order_whatever_their_name_and_bad_ones_are_refused() {
    assert_eq!(Approval::NAMES, ["approve", "reject", "note"]);
    let store = TempStore::new();
    let flow = store
        .builder()
        .register(reviewer)
        .register(confused)
        .build()
        .await
        .unwrap();
    let run = flow.start(reviewer, "doc".to_owned()).await.unwrap();
    let ik = run.idempotency_key.clone();
    // Parked with the enum's names.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let waiting = flow.status(&ik).await.unwrap().waiting;
        if waiting.as_ref().and_then(Waiting::signal) == Some("approve|reject|note") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{waiting:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Refused before anything is stored: a name the enum lacks, a payload of the wrong shape.
    let e = flow
        .signal(&ik, "escalate", serde_json::json!({}))
        .await
        .unwrap_err();
    match &e {
        ControlError::InvalidSignal { path, message } => {
            assert_eq!(path.as_deref(), Some("name"));
            assert!(message.contains("`approve`, `reject`, `note`"), "{message}");
        }
        other => panic!("expected InvalidSignal, got {other}"),
    }
    let e = flow
        .signal(&ik, "approve", serde_json::json!({"who": "ann"}))
        .await
        .unwrap_err();
    match &e {
        ControlError::InvalidSignal { message, .. } => {
            assert!(message.contains("missing field `by`"), "{message}");
        }
        other => panic!("expected InvalidSignal, got {other}"),
    }
    // Reserved for every task: the control actions' names.
    for name in ["cancel", "Stop", "resume"] {
        let e = flow
            .signal(&ik, name, serde_json::json!({}))
            .await
            .unwrap_err();
        assert!(matches!(e, ControlError::InvalidName(_)), "{name}: {e}");
        assert!(e.to_string().contains("reserved"), "{e}");
    }
    // Two notes and an approval, of three names: delivered in the order sent.
    flow.signal(&ik, "note", serde_json::json!("first"))
        .await
        .unwrap();
    flow.signal(&ik, "note", serde_json::json!("second"))
        .await
        .unwrap();
    flow.signal(&ik, "approve", serde_json::json!({"by": "ann"}))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(20), flow.wait(&run))
        .await
        .expect("finished")
        .unwrap();
    assert_eq!(got, ["note:first", "note:second", "approve:ann"]);

    // wait_signal(name) on a task with typed signals fails the run, saying what to write.
    let run = flow.start(confused, 1).await.unwrap();
    let e = flow.wait(&run).await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("next_signal"), "{text}");
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_retried_with_its_key_is_stored_once() {
    let store = TempStore::new();
    let build = || store.builder().register(adder).build();
    let flow = build().await.unwrap();
    let run = flow.start(adder, "once".to_owned()).await.unwrap();
    let ik = run.idempotency_key.clone();
    // The same key three times (a client that never saw the answer), across a crash.
    for _ in 0..2 {
        flow.signal_once(&ik, "add", serde_json::json!({"n": 1}), "req-1")
            .await
            .unwrap();
    }
    store.crash(&flow).await;
    let flow = build().await.unwrap();
    flow.signal_once(&ik, "add", serde_json::json!({"n": 1}), "req-1")
        .await
        .unwrap();
    flow.signal_once(&ik, "add", serde_json::json!({"n": 10}), "req-2")
        .await
        .unwrap();
    // Unkeyed signals are each stored.
    flow.signal(&ik, "add", serde_json::json!({"n": 100}))
        .await
        .unwrap();
    let sum = tokio::time::timeout(Duration::from_secs(20), flow.wait(&run))
        .await
        .expect("finished")
        .unwrap();
    assert_eq!(sum, 111, "req-1 counted once");
    let e = flow
        .signal_once(&ik, "add", serde_json::json!({}), "not a key!")
        .await
        .unwrap_err();
    assert!(matches!(e, ControlError::InvalidSignal { .. }), "{e}");
    flow.shutdown().await.unwrap();
}
