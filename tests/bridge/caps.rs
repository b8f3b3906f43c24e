//! Caps on open SSE streams: per user and in all, 429 with `Retry-After` past them, and a
//! refused POST starts nothing.

use std::time::Duration;

use serde_json::json;
use taskflow::TaskFlow;

use crate::support::*;

async fn capped_server(
    per_user: usize,
    global: usize,
) -> (String, TaskFlow, taskflow::testing::TempDataDir) {
    let dir = taskflow::testing::TempDataDir::new();
    let flow = dir
        .builder()
        .register(count)
        .max_open_streams(global)
        .max_open_streams_per_user(per_user)
        .build()
        .await
        .unwrap();
    let api = taskflow::axum::routes_with(flow.clone(), taskflow::axum::Anonymous::AsService)
        .layer(taskflow::axum::ProxyTrust::new().layer(&flow));
    let app: axum::Router = axum::Router::new().nest("/api", api);
    let base = serve_app(app).await;
    (base, flow, dir)
}

async fn attach(base: &str, ik: &str, user: &str) -> reqwest::Response {
    client()
        .get(format!("{base}/api/tasks/{ik}/events"))
        .header("x-forwarded-user", user)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_are_capped_per_user_and_in_all() {
    let (base, flow, _dir) = capped_server(2, 3).await;
    let first = post_as(
        &base,
        "ann",
        &json!({"tag": "cap-held", "n": 1, "hold": true}),
    )
    .await;
    assert_eq!(first.status(), 200);
    let ik = ik_of(&first);
    let second = attach(&base, &ik, "ann").await;
    assert_eq!(second.status(), 200);
    // Ann's third stream is over her cap: 429, Retry-After, the JSON shape.
    let third = attach(&base, &ik, "ann").await;
    assert_eq!(third.status(), 429);
    assert_eq!(third.headers()["retry-after"], "1");
    let body: serde_json::Value = third.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // A POST over the cap starts nothing.
    let refused = post_as(&base, "ann", &json!({"tag": "cap-new", "n": 1})).await;
    assert_eq!(refused.status(), 429);
    let list: serde_json::Value = client()
        .get(format!("{base}/api/tasks"))
        .header("x-forwarded-user", "ann")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["tasks"].as_array().unwrap().len(), 1, "{list}");
    // Bob has his own cap, but the global cap of 3 is reached with his first stream.
    let bob = post_as(
        &base,
        "bob",
        &json!({"tag": "cap-bob", "n": 1, "hold": true}),
    )
    .await;
    assert_eq!(bob.status(), 200);
    let bob_ik = ik_of(&bob);
    assert_eq!(
        attach(&base, &bob_ik, "bob").await.status(),
        429,
        "global cap"
    );
    // A stream that closes gives its place back.
    drop(second);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let again = attach(&base, &ik, "ann").await;
        if again.status() == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed stream's place was not given back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gate("cap-held").release.send_replace(true);
    gate("cap-bob").release.send_replace(true);
    drop((first, bob));
    flow.shutdown().await.unwrap();
}
