//! The demo's `approval-flow` over HTTP with its exact contract, through a `kill -9` while it
//! waits for its decision: the decision is sent while the server is down by the typed client,
//! which retries it (one `Idempotency-Key`) until the restarted server takes it; the run then
//! sleeps, joins its two children and completes with the contract's output, having received
//! the decision once. Bad input is refused naming the field.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};
use taskflow::IdempotencyKey;

use crate::support::*;

use crate::signal::demo_process::start_demo;

async fn status(url: &str, ik: &str) -> Value {
    client()
        .get(format!("{url}/api/tasks/{ik}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn until_status(url: &str, ik: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(url, ik).await;
        if pred(&s) {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_flow_survives_a_kill_while_waiting_and_a_decision_sent_while_down() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url) = start_demo(dir.path(), "127.0.0.1:0");
    let addr = url.trim_start_matches("http://").to_owned();
    // The contract's refusals name the field.
    for (body, field) in [
        (json!({}), "run_key"),
        (json!({"run_key": "x", "children_n": 0}), "children_n"),
        (json!({"run_key": "x", "children_n": 101}), "children_n"),
        (json!({"run_key": "x", "sleep_ms": 9}), "sleep_ms"),
        (json!({"run_key": "x", "sleep_ms": 60_001}), "sleep_ms"),
    ] {
        let response = client()
            .post(format!("{url}/api/tasks/approval-flow"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        let text = error.to_string();
        assert!(text.contains(field), "{body}: {text}");
    }
    let response = client()
        .post(format!("{url}/api/tasks/approval-flow"))
        .json(&json!({"run_key": "kill", "children_n": 4, "sleep_ms": 300}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let ik = ik_of(&response);
    drop(response); // the run continues with nobody watching (`on_disconnect = "continue"`)
    until_status(&url, &ik, "waits for its decision", |s| {
        s["waiting"] == json!({"kind": "signal", "name": "decision"})
    })
    .await;
    // A decision that is not one is refused, nothing stored.
    let response = client()
        .post(format!("{url}/api/tasks/{ik}/signals/decision"))
        .json(&json!({"approve": "yes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    let typed = taskflow::client::Client::new(format!("{url}/api"))
        .backoff_base(Duration::from_millis(150));
    let key = IdempotencyKey::parse(&ik).unwrap();
    let sent = tokio::spawn(async move {
        typed
            .signal(&key, "decision", &json!({"approve": true, "by": "ann"}))
            .await
    });
    // The client is retrying against a dead address for a while before the restart.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !sent.is_finished(),
        "the signal was answered with no server"
    );
    let (mut server, url2) = start_demo(dir.path(), &addr);
    assert_eq!(url2, url);
    let answer = tokio::time::timeout(Duration::from_secs(60), sent)
        .await
        .expect("the retrying client got through")
        .unwrap()
        .expect("the restarted server took the decision");
    assert_eq!(answer["idempotency_key"], json!(ik));

    let done = until_status(&url, &ik, "completes", |s| s["status"] == "completed").await;
    assert_eq!(
        done["output"],
        json!({"approved_by": "ann", "children": [{"final": 4}, {"final": 4}]})
    );
    let children = done["children"].as_array().expect("children listed");
    assert_eq!(children.len(), 2);
    for c in children {
        assert_eq!(c["task"], "count-to-n");
        assert_eq!(c["status"], "completed");
    }
    // The log: gapless ids, `prepared {}`, and one wait of each kind, each ended once.
    let response = client()
        .get(format!("{url}/api/tasks/{ik}/events"))
        .send()
        .await
        .unwrap();
    let mut stream = response.bytes_stream().eventsource();
    let mut log: Vec<(u64, String, Value)> = Vec::new();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("replay stalled")
    {
        let e = e.unwrap();
        if e.event == "ready" || e.event == "heartbeat" {
            continue;
        }
        let done = e.event == "completed";
        log.push((
            e.id.parse().unwrap(),
            e.event,
            serde_json::from_str(&e.data).unwrap(),
        ));
        if done {
            break;
        }
    }
    for (k, (id, _, _)) in log.iter().enumerate() {
        assert_eq!(*id, k as u64 + 1, "gap or duplicate: {log:?}");
    }
    let names: Vec<&str> = log.iter().map(|(_, n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "prepared",
            "waiting",
            "wait_ended",
            "waiting",
            "wait_ended",
            "waiting",
            "wait_ended",
            "completed"
        ],
        "{log:?}"
    );
    assert_eq!(log[0].2, json!({}));
    assert_eq!(log[1].2, json!({"kind": "signal", "name": "decision"}));
    assert_eq!(log[2].2, json!({"kind": "signal"}));
    assert_eq!(log[3].2["kind"], "sleep");
    assert!(
        log[3].2["until"].as_str().unwrap().ends_with('Z'),
        "{}",
        log[3].2
    );
    assert_eq!(log[5].2, json!({"kind": "children"}));
    assert_eq!(log[6].2, json!({"kind": "children"}));
    // A finished run takes no more decisions.
    let response = client()
        .post(format!("{url}/api/tasks/{ik}/signals/decision"))
        .json(&json!({"approve": false, "by": "bob"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    server.kill().unwrap();
    server.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_approval_ends_with_who_rejected_it_and_a_retried_decision_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url) = start_demo(dir.path(), "127.0.0.1:0");
    let response = client()
        .post(format!("{url}/api/tasks/approval-flow"))
        .json(&json!({"run_key": "reject"}))
        .send()
        .await
        .unwrap();
    let ik = ik_of(&response);
    drop(response);
    until_status(&url, &ik, "waits", |s| s["waiting"]["kind"] == "signal").await;
    // The same request twice (a client that lost the first answer): stored once, so the
    // flow's one wait gets it and the run has no second decision queued.
    for _ in 0..2 {
        let response = client()
            .post(format!("{url}/api/tasks/{ik}/signals/decision"))
            .header("idempotency-key", "decision-1")
            .json(&json!({"approve": false, "by": "bob"}))
            .send()
            .await
            .unwrap();
        assert!(
            response.status() == 202 || response.status() == 409,
            "{}",
            response.status()
        );
    }
    let done = until_status(&url, &ik, "completes", |s| s["status"] == "completed").await;
    assert_eq!(done["output"], json!({"rejected_by": "bob"}));
    server.kill().unwrap();
    server.wait().unwrap();
}
