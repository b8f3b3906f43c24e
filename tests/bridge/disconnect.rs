//! Cancel on disconnect: a bridge-started run whose last client leaves is stopped after the
//! grace; a re-attach within the grace keeps it; in-process runs are never stopped by this.

use std::time::Duration;

use axum::response::IntoResponse;
use serde_json::json;
use taskflow::{ExecuteTaskSettings, TaskContext, TaskError, TaskState};

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

/// Holds until its gate opens or it is stopped; `on_disconnect` says what a disconnect does.
#[taskflow::task(name = "dc-continue", on_disconnect = "continue", max_attempts = 1)]
async fn continuing(ctx: TaskContext<Count>, tag: String) -> Result<(), TaskError> {
    held(ctx, tag).await
}

#[taskflow::task(name = "dc-suspend", max_attempts = 1)]
async fn suspending(ctx: TaskContext<Count>, tag: String) -> Result<(), TaskError> {
    held(ctx, tag).await
}

async fn held(ctx: TaskContext<Count>, tag: String) -> Result<(), TaskError> {
    let g = gate(&tag);
    ctx.emit(Count::Tick { i: 0, big: 0 }).await?;
    g.progress.send_modify(|n| *n += 1);
    let mut release = g.release.subscribe();
    tokio::select! {
        _ = release.wait_for(|r| *r) => Ok(()),
        () = ctx.cancelled() => Err(TaskError::new("stopped while held")),
    }
}

async fn small_flow(dir: &taskflow::testing::TempDataDir) -> taskflow::TaskFlow {
    dir.builder()
        .register(continuing)
        .register(suspending)
        .stop_grace(Duration::from_millis(200))
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_says_continue_runs_on_when_its_clients_leave_unless_the_call_overrides() {
    let dir = taskflow::testing::TempDataDir::new();
    let flow = small_flow(&dir).await;
    let short = ExecuteTaskSettings::default().disconnect_grace(Duration::from_millis(50));
    let response = flow
        .execute_task(continuing, "dc-cont".into(), short.clone())
        .await
        .into_response();
    let ik = response.headers()["x-taskflow-idempotency-key"]
        .to_str()
        .unwrap()
        .to_owned();
    gate("dc-cont").wait_progress(1).await;
    drop(response);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ik = taskflow::IdempotencyKey::parse(&ik).unwrap();
    assert_eq!(flow.status(&ik).await.unwrap().status, TaskState::Running);
    // The call's own setting wins over the task's.
    let response = flow
        .execute_task(
            continuing,
            "dc-cont-override".into(),
            short.cancel_on_disconnect(true),
        )
        .await
        .into_response();
    let ik2 = taskflow::IdempotencyKey::parse(
        response.headers()["x-taskflow-idempotency-key"]
            .to_str()
            .unwrap(),
    )
    .unwrap();
    gate("dc-cont-override").wait_progress(1).await;
    drop(response);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while flow.status(&ik2).await.unwrap().status != TaskState::Suspended {
        assert!(tokio::time::Instant::now() < deadline, "override ignored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gate("dc-cont").release.send_replace(true);
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_run_recovered_after_a_crash_is_suspended_when_no_client_returns() {
    use taskflow::testing::SimulateCrash;
    let dir = taskflow::testing::TempDataDir::new();
    let flow = small_flow(&dir).await;
    let grace = ExecuteTaskSettings::default().disconnect_grace(Duration::from_millis(300));
    // Watched (started by the bridge) and unwatched (started in-process) runs, both held.
    let response = flow
        .execute_task(suspending, "dc-rec-watched".into(), grace)
        .await
        .into_response();
    let watched = taskflow::IdempotencyKey::parse(
        response.headers()["x-taskflow-idempotency-key"]
            .to_str()
            .unwrap(),
    )
    .unwrap();
    let unwatched = flow
        .start(suspending, "dc-rec-plain".into())
        .await
        .unwrap()
        .idempotency_key;
    gate("dc-rec-watched").wait_progress(1).await;
    gate("dc-rec-plain").wait_progress(1).await;
    flow.crash();
    drop(response);
    // The next process: both runs recover; nobody re-attaches to the watched one.
    let flow = small_flow(&dir).await;
    let _routes: axum::Router = taskflow::axum::routes(flow.clone());
    gate("dc-rec-watched").wait_progress(2).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let st = flow.status(&watched).await.unwrap();
        if st.status == TaskState::Suspended {
            assert_eq!(st.suspended_reason.as_deref(), Some("client_disconnected"));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "recovered run not watched"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        flow.status(&unwatched).await.unwrap().status,
        TaskState::Running
    );
    gate("dc-rec-plain").release.send_replace(true);
    flow.shutdown().await.unwrap();
}
