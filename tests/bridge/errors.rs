//! Every HTTP error code of the bridge, in the JSON shape; masking in production.

use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::support::*;

async fn error_of(r: reqwest::Response) -> (u16, Value, reqwest::header::HeaderMap) {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    assert_eq!(headers["content-type"], "application/json");
    (status, r.json().await.unwrap(), headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_error_code_in_the_json_shape() {
    let s = server_with(Options {
        payload_limit: 2_000,
        rate_per_user: 1,
        ..Options::default()
    })
    .await;
    let c = client();
    let url = format!("{}/api/tasks/count", s.base);

    // 400 with the field's path.
    let (status, body, _) = error_of(
        c.post(&url)
            .json(&json!({"tag": "e", "n": "abc"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_input");
    assert_eq!(body["error"]["path"], "n");
    // 400 for a body that is not JSON at all.
    let (status, body, _) = error_of(
        c.post(&url)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_input"))
    );

    // 401: a task that needs a user... the count task does not, so use a bad header.
    let (status, body, _) = error_of(
        c.post(&url)
            .header("x-forwarded-user", "")
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );

    // 404.
    let (status, body, _) = error_of(
        c.get(format!("{}/api/tasks/{}", s.base, "B".repeat(43)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // axum's own rejections come in the same shape: a wrong method, an unknown route.
    for (status, body, _) in [
        error_of(c.put(format!("{}/api/tasks", s.base)).send().await.unwrap()).await,
        error_of(
            c.get(format!("{}/api/nowhere", s.base))
                .send()
                .await
                .unwrap(),
        )
        .await,
    ] {
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("not_found"))
        );
    }

    // 409 on a finished run.
    let done = post(&s.base, &json!({"tag": "e-409", "n": 1})).await;
    let ik = ik_of(&done);
    frames(done).await;
    let (status, body, _) = error_of(
        c.post(format!("{}/api/tasks/{ik}/stop", s.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("invalid_state"))
    );

    // 413 for a body of the input limit + 1 byte; the limit itself passes the body check.
    let pad = |len: usize| {
        let base = r#"{"tag":""}"#.len();
        format!(r#"{{"tag":"{}"}}"#, "x".repeat(len - base))
    };
    let (status, body, _) = error_of(
        c.post(&url)
            .header("content-type", "application/json")
            .body(pad(2_001))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let at_limit = c
        .post(&url)
        .header("content-type", "application/json")
        .header("x-forwarded-user", "limit-user")
        .body(pad(2_000))
        .send()
        .await
        .unwrap();
    assert_ne!(at_limit.status(), 413);
    drop(at_limit);

    // 415.
    let (status, body, _) = error_of(
        c.post(&url)
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );

    // 429 with Retry-After: the per-user rate is 1 per minute.
    let first = post_as(&s.base, "rater", &json!({"tag": "e-429-a", "n": 1})).await;
    assert_eq!(first.status(), 200);
    frames(first).await;
    let (status, body, headers) =
        error_of(post_as(&s.base, "rater", &json!({"tag": "e-429-b", "n": 1})).await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("rate_limited"))
    );
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));

    // 503 once shutting down (a kept-alive client).
    let keep_alive = reqwest::Client::new();
    let warm = keep_alive
        .get(format!("{}/api/tasks", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), 200);
    s.flow.shutdown().await.unwrap();
    let (status, body, _) = error_of(
        keep_alive
            .post(&url)
            .json(&json!({"tag": "e-503", "n": 1}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("shutting_down"))
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_masks_handler_errors_and_panics_but_not_public_errors() {
    let s = server_with(Options {
        production: true,
        ..Options::default()
    })
    .await;
    let err = post(
        &s.base,
        &json!({"tag": "m-err", "n": 1, "fail": "SECRET-123"}),
    )
    .await;
    let ik = ik_of(&err);
    let text = err.text().await.unwrap();
    let panic = post(
        &s.base,
        &json!({"tag": "m-panic", "n": 1, "panic": "SECRET-456"}),
    )
    .await;
    let panic_text = panic.text().await.unwrap();
    for (t, code) in [(&text, "task_error"), (&panic_text, "panicked")] {
        let f = parse_text(t).await;
        let last = f.last().unwrap();
        assert_eq!(last.event, "failed");
        assert_eq!(last.data, json!({"message": "Server error", "code": code}));
        assert!(!t.contains("SECRET"), "{t}");
        assert!(!t.contains("panicked at"), "{t}");
    }
    // The status JSON masks too.
    let status = client()
        .get(format!("{}/api/tasks/{ik}", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!status.contains("SECRET"), "{status}");
    assert!(status.contains("Server error"));
    // A public error passes unmasked, and so do 4xx field paths.
    let public = post(
        &s.base,
        &json!({"tag": "m-public", "n": 1, "fail": "quota exceeded", "public_fail": true}),
    )
    .await;
    let f = frames(public).await;
    assert_eq!(f.last().unwrap().data["message"], "quota exceeded");
    let (status, body, _) = error_of(post(&s.base, &json!({"tag": "m", "n": -1})).await).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["path"], "n");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_safe_integers_can_be_turned_off() {
    let s = server().await;
    let response = s
        .flow
        .execute_task(
            count,
            CountIn {
                tag: "js-off".into(),
                n: 1,
                ..CountIn::default()
            },
            taskflow::ExecuteTaskSettings::default().js_safe_integers(false),
        )
        .await
        .into_response();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let f = parse_text(std::str::from_utf8(&body).unwrap()).await;
    assert_eq!(f[1].data, json!({"i": 0, "big": 9_007_199_254_740_993i64}));
    assert_eq!(f[2].data["result"]["huge"], json!(u64::MAX));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text() {
    let s = server().await;
    frames(post(&s.base, &json!({"tag": "metrics", "n": 2})).await).await;
    let text = client()
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("# TYPE taskflow_tasks_completed_total counter"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l == "taskflow_steps_executed_total 2"),
        "{text}"
    );
    // The commit histograms: cumulative buckets ending in +Inf, which is the count; the
    // count is the commits, the group sizes sum to the batches.
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
            .parse()
            .unwrap()
    };
    for h in ["taskflow_wal_commit_seconds", "taskflow_wal_group_size"] {
        assert!(text.contains(&format!("# TYPE {h} histogram")), "{text}");
        let buckets: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with(&format!("{h}_bucket{{")))
            .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
            .collect();
        assert!(buckets.len() > 5, "{text}");
        assert!(
            buckets.windows(2).all(|w| w[0] <= w[1]),
            "not cumulative: {buckets:?}"
        );
        let inf = value(&format!("{h}_bucket{{le=\"+Inf\"}}"));
        assert_eq!(Some(&inf), buckets.last());
        assert_eq!(inf, value(&format!("{h}_count")));
    }
    let commits = value("taskflow_wal_commits_total");
    assert!(commits >= 3.0);
    assert_eq!(value("taskflow_wal_commit_seconds_count"), commits);
    assert_eq!(
        value("taskflow_wal_group_size_sum"),
        value("taskflow_wal_batches_total")
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_messages_name_their_field_in_development_and_production() {
    for production in [false, true] {
        let s = server_with(Options {
            production,
            ..Options::default()
        })
        .await;
        let (status, body, _) =
            error_of(post(&s.base, &json!({"tag": "x", "n": "many"})).await).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["path"], "n");
        assert_eq!(
            body["error"]["message"], "n: invalid type: string \"many\", expected u32",
            "production={production}"
        );
        let (status, body, _) = error_of(post(&s.base, &json!([1, 2])).await).await;
        assert_eq!(status, 400);
        assert_eq!(
            body["error"]["message"], "invalid type: an array, expected an object",
            "production={production}"
        );
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_429_queue_full_with_retry_after() {
    let dir = taskflow::testing::TempDataDir::new();
    let flow = dir
        .builder()
        .register(count)
        .max_concurrent(1)
        .queue_limit(1)
        .build()
        .await
        .unwrap();
    let app: axum::Router = axum::Router::new().nest(
        "/api",
        taskflow::axum::routes_with(flow.clone(), taskflow::axum::Anonymous::AsService),
    );
    let base = serve_app(app).await;
    // One run holds the only slot, one waits in the queue; the third has no room.
    let running = post(&base, &json!({"tag": "qf-1", "n": 1, "hold": true})).await;
    assert_eq!(running.status(), 200);
    gate("qf-1").wait_progress(1).await;
    let queued = post(&base, &json!({"tag": "qf-2", "n": 1})).await;
    assert_eq!(queued.status(), 200);
    let (status, body, headers) =
        error_of(post(&base, &json!({"tag": "qf-3", "n": 1})).await).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "queue_full");
    assert_eq!(headers["retry-after"], "1");
    gate("qf-1").release.send_replace(true);
    drop((running, queued));
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_failure_mid_stream_ends_it_with_a_masked_error_frame() {
    use std::sync::{Arc, Mutex};
    // PostgreSQL through a proxy of the test's own, so the store can lose its connections.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    let pipes: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
    let held = pipes.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let pipe = tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect("127.0.0.1:5432").await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
            held.lock().unwrap().push(pipe.abort_handle());
        }
    });
    let schema = taskflow::testing::TempSchema::new();
    let config =
        taskflow::store::PgConfig::new(format!("postgres://postgres@127.0.0.1:{proxy_port}/test"))
            .schema(schema.name());
    let flow = taskflow::TaskFlow::builder()
        .postgres(config)
        .register(count)
        .environment(taskflow::Environment::Production)
        .build()
        .await
        .unwrap();
    let app = axum::Router::new().nest(
        "/api",
        taskflow::axum::routes_with(flow.clone(), taskflow::axum::Anonymous::AsService),
    );
    let base = serve_app(app).await;
    let mut response = client()
        .post(format!("{base}/api/tasks/count"))
        .json(&serde_json::json!({"tag": "mid-stream-storage", "n": 500, "sleep_ms": 20}))
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    while text.matches("event: tick").count() < 2 {
        let chunk = response
            .chunk()
            .await
            .unwrap()
            .expect("ticks before the cut");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    for pipe in pipes.lock().unwrap().drain(..) {
        pipe.abort();
    }
    while let Ok(Some(chunk)) =
        tokio::time::timeout(std::time::Duration::from_secs(20), response.chunk())
            .await
            .expect("the stream ended within 20 s")
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    assert!(
        last.contains("event: error"),
        "the stream ends with an error frame: {last}"
    );
    assert!(
        last.contains(r#"data: {"code":"storage_unavailable","message":"Server error"}"#),
        "masked in production: {last}"
    );
    drop(flow);
}
