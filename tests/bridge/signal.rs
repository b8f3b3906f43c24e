//! SIGTERM to a real server process (the demo) mid-stream: the client reads the
//! `server_shutting_down` frame, the process exits, and after a restart on the same data dir a
//! re-attach with the last id continues with no gap or duplicate.

use std::process::{Child, Command};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::json;

use crate::support::*;

#[path = "../common/demo_process.rs"]
pub(crate) mod demo_process;
use demo_process::start_demo;

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_then_restart_continues_without_gap() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = start_demo(dir.path(), "127.0.0.1:0");
    let response = client()
        .post(format!("{url}/api/tasks/count-to-n"))
        .json(&json!({"run_key": "sigterm", "n": 30, "sleep_ms": 50}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let ik = ik_of(&response);
    let mut stream = response.bytes_stream().eventsource();
    let mut seen: Vec<u64> = Vec::new();
    let mut last_event = String::new();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("stream stalled")
    {
        let e = e.unwrap();
        if e.event == "tick" {
            seen.push(e.id.parse().unwrap());
            if seen.len() == 5 {
                let status = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status()
                    .unwrap();
                assert!(status.success());
            }
        }
        last_event = e.event.clone();
        if e.event == "error" {
            assert_eq!(
                e.data,
                r#"{"code":"server_shutting_down","message":"server_shutting_down"}"#
            );
        }
    }
    assert_eq!(
        last_event, "error",
        "the stream ended with the shutdown frame"
    );
    let status = wait_exit(&mut child);
    assert!(status.success(), "exit status {status}");
    assert!(seen.iter().copied().eq(1..=seen.len() as u64));

    let (mut child, url) = start_demo(dir.path(), "127.0.0.1:0");
    let after = frames(
        client()
            .get(format!("{url}/api/tasks/{ik}/events"))
            .header("last-event-id", seen.last().unwrap().to_string())
            .send()
            .await
            .unwrap(),
    )
    .await;
    let more = ids(&after);
    assert_eq!(more[0], *seen.last().unwrap() + 1);
    let all: Vec<u64> = seen.iter().chain(&more).copied().collect();
    assert!(all.iter().copied().eq(1..=31), "{all:?}");
    assert_eq!(after.last().unwrap().data, json!({"result": {"final": 30}}));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    wait_exit(&mut child);
}

fn term(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_signals_coalesce_and_a_stuck_connection_is_cut_15_s_after_the_drain() {
    use tokio::io::AsyncWriteExt;
    // Without a stuck connection: three signals, one quick, clean exit.
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _) = start_demo(dir.path(), "127.0.0.1:0");
    let sent = std::time::Instant::now();
    for _ in 0..3 {
        term(&child);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(wait_exit(&mut child).success());
    let quick = sent.elapsed();
    assert!(quick < Duration::from_secs(5), "exit took {quick:?}");
    // With a request whose body never completes: the drain is done at once, the connection
    // is cut when the 15 s are up, and the process exits cleanly.
    let (mut child, url) = start_demo(dir.path(), "127.0.0.1:0");
    let addr = url.trim_start_matches("http://").to_owned();
    let mut stuck = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stuck
        .write_all(
            b"POST /api/tasks/count-to-n HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"run_key\"",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = std::time::Instant::now();
    for _ in 0..3 {
        term(&child);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(wait_exit(&mut child).success());
    let forced = sent.elapsed();
    println!(
        "repeated SIGTERMs: clean exit after {quick:?}; with a stuck request, after {forced:?}"
    );
    assert!(
        forced >= taskflow::axum::FORCED_EXIT_AFTER - Duration::from_millis(500),
        "the stuck connection was cut before the 15 s: {forced:?}"
    );
    assert!(
        forced < taskflow::axum::FORCED_EXIT_AFTER + Duration::from_secs(5),
        "exit took {forced:?}"
    );
    drop(stuck);
}
