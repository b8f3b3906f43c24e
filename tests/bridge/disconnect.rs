//! Cancel on disconnect: a bridge-started run whose last client leaves is stopped after the
//! grace; a re-attach within the grace keeps it; in-process runs are never stopped by this.

use std::time::Duration;

use axum::response::IntoResponse;
use serde_json::json;
use taskflow::{ExecuteTaskSettings, TaskState};

use crate::support::*;

async fn status_of(s: &Server, ik: &str) -> serde_json::Value {
    client()
        .get(format!("{}/api/tasks/{ik}", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn wait_status(s: &Server, ik: &str, want: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let st = status_of(s, ik).await;
        if st["status"] == want {
            return st;
        }
        assert!(tokio::time::Instant::now() < deadline, "stuck at {st}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts a held run through `execute_task` with a short grace and reads its first tick.
async fn start_held(s: &Server, tag: &str, grace_ms: u64) -> (String, axum::response::Response) {
    let response = s
        .flow
        .execute_task(
            count,
            CountIn {
                tag: tag.into(),
                n: 1,
                hold: true,
                ..CountIn::default()
            },
            ExecuteTaskSettings::default().disconnect_grace(Duration::from_millis(grace_ms)),
        )
        .await
        .into_response();
    let ik = response.headers()["x-taskflow-idempotency-key"]
        .to_str()
        .unwrap()
        .to_owned();
    gate(tag).wait_progress(1).await;
    (ik, response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_client_leaving_stops_the_run_after_the_grace() {
    let s = server().await;
    // Over a real socket: read two frames, then hang up.
    let r = post(&s.base, &json!({"tag": "dc-leave", "n": 1, "hold": true})).await;
    let ik = ik_of(&r);
    let f = first_frames(r, 2).await;
    assert_eq!(names(&f), ["ready", "tick"]);
    // The default grace is 5 s; still running just after the hang-up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status_of(&s, &ik).await["status"], "running");
    let st = wait_status(&s, &ik, "suspended").await;
    assert_eq!(st["suspended_reason"], "client_disconnected");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reattach_within_the_grace_keeps_the_run() {
    let s = server().await;
    let (ik, response) = start_held(&s, "dc-return", 1500).await;
    drop(response);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let again = client()
        .get(format!("{}/api/tasks/{ik}/events", s.base))
        .send()
        .await
        .unwrap();
    let reader = tokio::spawn(frames(again));
    // Past the grace: had the re-attach not cancelled the timer, the run would be suspended.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        status_of(&s, &ik).await["status"],
        "running",
        "timer cancelled"
    );
    gate("dc-return").release.send_replace(true);
    let f = reader.await.unwrap();
    assert_eq!(f.last().unwrap().event, "completed");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_in_process_is_never_stopped_by_disconnects() {
    let s = server().await;
    let input = CountIn {
        tag: "dc-inproc".into(),
        n: 1,
        hold: true,
        ..CountIn::default()
    };
    let run = s.flow.start(count, input.clone()).await.unwrap();
    gate("dc-inproc").wait_progress(1).await;
    // A client attaches over SSE (with a tiny grace) and leaves.
    let response = s
        .flow
        .execute_task(
            count,
            input,
            ExecuteTaskSettings::default().disconnect_grace(Duration::from_millis(50)),
        )
        .await;
    drop(response);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        s.flow.status(&run.idempotency_key).await.unwrap().status,
        TaskState::Running
    );
    gate("dc-inproc").release.send_replace(true);
    s.flow.wait(&run).await.unwrap();
    s.shutdown().await;
}
