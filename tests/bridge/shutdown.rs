//! Shutdown mid-stream: the client reads `server_shutting_down`; after a restart on the same
//! data dir a re-attach from the last id continues with no gap or duplicate.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_the_error_frame_and_a_restart_continues_without_gap() {
    let mut s = server().await;
    let input = json!({"tag": "sd-main", "n": 40, "sleep_ms": 20});
    let r = post(&s.base, &input).await;
    let ik = ik_of(&r);
    let reader = tokio::spawn(frames(r));
    gate("sd-main").wait_progress(5).await;
    s.trigger();
    let before = reader.await.unwrap();
    let last = before.last().unwrap();
    assert_eq!(last.event, "error");
    assert_eq!(
        last.data,
        json!({"message": "server_shutting_down", "code": "server_shutting_down"})
    );
    let seen = ids(&before);
    assert!(!seen.is_empty());
    assert!(seen.iter().copied().eq(1..=seen.len() as u64), "{before:?}");
    let dir = s.shutdown().await;

    // Restart on the same data dir; the run is recovered and the client resumes.
    let s = server_with(Options {
        dir: Some(dir),
        ..Options::default()
    })
    .await;
    let after = frames(
        client()
            .get(format!("{}/api/tasks/{ik}/events", s.base))
            .header("last-event-id", seen.last().unwrap().to_string())
            .send()
            .await
            .unwrap(),
    )
    .await;
    let more = ids(&after);
    assert_eq!(more[0], *seen.last().unwrap() + 1, "no gap, no duplicate");
    let all: Vec<u64> = seen.iter().chain(more.iter()).copied().collect();
    assert!(
        all.iter().copied().eq(1..=41),
        "ticks 1..=40 then completed: {all:?}"
    );
    assert_eq!(after.last().unwrap().event, "completed");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_returns_after_the_drain() {
    let s = server().await;
    let r = post(&s.base, &json!({"tag": "sd-idle", "n": 1})).await;
    frames(r).await;
    let started = tokio::time::Instant::now();
    s.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(10));
}
