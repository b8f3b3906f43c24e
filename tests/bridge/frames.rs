//! Headers, the first frames, ids, terminal frames.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_ready_ids_and_completed() {
    let s = server().await;
    let response = post(&s.base, &json!({"tag": "fr-basic", "n": 3})).await;
    assert_eq!(response.status(), 200);
    let h = response.headers().clone();
    assert_eq!(h["content-type"], "text/event-stream; charset=utf-8");
    assert_eq!(h["cache-control"], "no-cache, no-transform");
    assert_eq!(h["x-accel-buffering"], "no");
    assert_eq!(h["vary"], "Origin");
    assert!(h.get("connection").is_none());
    let ik = ik_of(&response);
    assert_eq!(ik.len(), 43);
    let body = response.text().await.unwrap();
    assert!(
        body.starts_with("retry: 2000\n\nevent: ready\ndata: "),
        "{body}"
    );
    let parsed = parse_text(&body).await;
    assert_eq!(parsed[0].event, "ready");
    assert_eq!(parsed[0].id, "");
    assert_eq!(
        parsed[0].data,
        json!({"idempotency_key": ik, "attached": false})
    );
    assert_eq!(names(&parsed[1..]), ["tick", "tick", "tick", "completed"]);
    assert_eq!(ids(&parsed), [1, 2, 3, 4]);
    // JS-safe integers by default: beyond 2^53 - 1 as strings, else numbers.
    assert_eq!(parsed[1].data, json!({"i": 0, "big": "9007199254740993"}));
    assert_eq!(
        parsed[4].data,
        json!({"result": {"n": 3, "huge": "18446744073709551615"}})
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_cancelled_end_the_stream() {
    let s = server().await;
    let failed =
        frames(post(&s.base, &json!({"tag": "fr-fail", "n": 1, "fail": "boom"})).await).await;
    assert_eq!(names(&failed), ["ready", "tick", "failed"]);
    assert_eq!(
        failed[2].data,
        json!({"message": "boom", "code": "task_error"})
    );

    let held = post(&s.base, &json!({"tag": "fr-cancel", "n": 1, "hold": true})).await;
    let ik = ik_of(&held);
    let reader = tokio::spawn(frames(held));
    gate("fr-cancel").wait_progress(1).await;
    let r = client()
        .post(format!("{}/api/tasks/{ik}/cancel", s.base))
        .json(&json!({"reason": "no longer needed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let st: serde_json::Value = r.json().await.unwrap();
    assert_eq!(st["status"], "cancelled");
    assert_eq!(st["cancel_reason"], "no longer needed");
    assert_eq!(st["suspended_reason"], serde_json::Value::Null);
    let cancelled = reader.await.unwrap();
    assert_eq!(names(&cancelled), ["ready", "tick", "cancelled"]);
    assert_eq!(cancelled[2].data, json!({"reason": "no longer needed"}));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_suspended_ends_the_stream_and_a_historical_one_does_not() {
    let s = server().await;
    let input = json!({"tag": "fr-suspend", "n": 2, "hold": true});
    let first = post(&s.base, &input).await;
    let ik = ik_of(&first);
    let reader = tokio::spawn(frames(first));
    gate("fr-suspend").wait_progress(2).await;
    let r = client()
        .post(format!("{}/api/tasks/{ik}/stop", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let stopped = reader.await.unwrap();
    assert_eq!(names(&stopped), ["ready", "tick", "tick", "suspended"]);
    assert_eq!(ids(&stopped), [1, 2, 3]);

    // Resume by POSTing the same input: the replay forwards the old `suspended`, continues.
    let again = post(&s.base, &input).await;
    assert_eq!(ik_of(&again), ik);
    let reader = tokio::spawn(frames(again));
    gate("fr-suspend").wait_progress(4).await;
    gate("fr-suspend").release.send_replace(true);
    let resumed = reader.await.unwrap();
    assert_eq!(resumed[0].data["attached"], true);
    assert_eq!(
        names(&resumed),
        ["ready", "tick", "tick", "suspended", "completed"],
        "replayed steps emit nothing twice"
    );
    assert_eq!(ids(&resumed), [1, 2, 3, 4]);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_goes_out_in_few_writes_of_many_frames() {
    use futures_util::StreamExt;
    let s = server().await;
    let input = CountIn {
        tag: "fr-batch".into(),
        n: 1000,
        ..CountIn::default()
    };
    let run = s.flow.start(count, input).await.unwrap();
    s.flow.wait(&run).await.unwrap();
    let response = s
        .flow
        .reattach(
            &run.idempotency_key,
            taskflow::ExecuteTaskSettings::default(),
        )
        .await;
    let mut body = axum::response::IntoResponse::into_response(response)
        .into_body()
        .into_data_stream();
    let (mut writes, mut text) = (0, String::new());
    while let Some(chunk) = body.next().await {
        writes += 1;
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let f = parse_text(&text).await;
    assert_eq!(f.len(), 1002, "ready, 1000 ticks, completed");
    assert_eq!(f.last().unwrap().event, "completed");
    for (k, frame) in f[1..].iter().enumerate() {
        assert_eq!(frame.id, (k + 1).to_string(), "ids gapless from 1");
    }
    // One write for `retry` + `ready`, then up to 512 frames per write (one per frame before).
    assert!(
        writes <= 1 + 1001_usize.div_ceil(512) + 1,
        "{writes} writes"
    );
    s.shutdown().await;
}

/// The keep-alive period of [`body_with_fast_keep_alive`].
const FAST_KEEP_ALIVE: Duration = Duration::from_millis(100);

/// The SSE body of `execute_task(count, input)` with a [`FAST_KEEP_ALIVE`] keep-alive.
async fn body_with_fast_keep_alive(
    s: &Server,
    input: CountIn,
) -> impl futures_util::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin + use<> {
    let response = s
        .flow
        .execute_task(
            count,
            input,
            taskflow::ExecuteTaskSettings::default().keep_alive(FAST_KEEP_ALIVE),
        )
        .await;
    axum::response::IntoResponse::into_response(response)
        .into_body()
        .into_data_stream()
}

/// Reads `body` into `text` until `done(text)`; fails after 5 s without a chunk. Returns each
/// chunk with the moment it arrived: the body is polled right here, so that is the moment the
/// bridge wrote it.
async fn read_until(
    body: &mut (impl futures_util::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin),
    text: &mut String,
    done: impl Fn(&str) -> bool,
) -> Vec<(tokio::time::Instant, String)> {
    use futures_util::StreamExt;
    let mut chunks = Vec::new();
    while !done(text) {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("nothing within 5 s")
            .expect("the stream ended first")
            .unwrap();
        let chunk = std::str::from_utf8(&chunk).unwrap().to_owned();
        text.push_str(&chunk);
        chunks.push((tokio::time::Instant::now(), chunk));
    }
    chunks
}

/// Every `: hb` in `chunks` came after at least `FAST_KEEP_ALIVE` (less a scheduling margin)
/// in which nothing was written: a keep-alive answers silence, never a schedule. Whether the
/// run had such a silence (a slow fsync can hold an event back) is the disk's business, so the
/// rule is checked per keep-alive rather than by counting them.
fn assert_keep_alives_follow_silence(chunks: &[(tokio::time::Instant, String)]) {
    let margin = Duration::from_millis(20);
    for pair in chunks.windows(2) {
        let ((before, _), (at, chunk)) = (&pair[0], &pair[1]);
        if chunk.contains(": hb") {
            let quiet = at.duration_since(*before);
            assert!(
                quiet + margin >= FAST_KEEP_ALIVE,
                "a keep-alive {quiet:?} after the previous write: {chunks:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_stream_gets_keep_alive_comments() {
    let s = server().await;
    let input = CountIn {
        tag: "fr-hb".into(),
        n: 1,
        hold: true,
        ..CountIn::default()
    };
    let mut body = body_with_fast_keep_alive(&s, input).await;
    // ready, the tick, then silence while the run holds: a `: hb` comment per 100 ms.
    let mut text = String::new();
    let started = tokio::time::Instant::now();
    read_until(&mut body, &mut text, |t| t.matches(": hb\n\n").count() >= 2).await;
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "keep-alives came too soon"
    );
    let tick = text.find("event: tick").expect("the tick came first");
    assert!(text.find(": hb").unwrap() > tick, "{text}");
    // A comment is not an event: an SSE parser sees only ready and tick.
    let frames = parse_text(&text).await;
    assert_eq!(names(&frames), ["ready", "tick"]);
    gate("fr-hb").release.send_replace(true);
    drop(body);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_keeps_sending_gets_keep_alives_only_after_silence() {
    let s = server().await;
    // A tick every 30 ms for ~600 ms, with a 100 ms keep-alive: a keep-alive on a schedule
    // would fall within 30 ms of a tick; one that answers silence comes only after a stall.
    let input = CountIn {
        tag: "fr-busy".into(),
        n: 20,
        sleep_ms: 30,
        ..CountIn::default()
    };
    let mut body = body_with_fast_keep_alive(&s, input).await;
    let mut text = String::new();
    let chunks = read_until(&mut body, &mut text, |t| t.contains("event: completed")).await;
    assert_eq!(text.matches("event: tick").count(), 20, "{text}");
    assert_keep_alives_follow_silence(&chunks);
    // And silence after events still gets its keep-alive (the timer is rearmed, not lost).
    let input = CountIn {
        tag: "fr-busy-then-idle".into(),
        n: 5,
        sleep_ms: 30,
        hold: true,
        ..CountIn::default()
    };
    let mut body = body_with_fast_keep_alive(&s, input).await;
    let mut text = String::new();
    let chunks = read_until(&mut body, &mut text, |t| {
        t.matches("event: tick").count() == 5 && t.rfind(": hb") > t.rfind("event: tick")
    })
    .await;
    assert_keep_alives_follow_silence(&chunks);
    gate("fr-busy-then-idle").release.send_replace(true);
    drop(body);
    s.shutdown().await;
}
