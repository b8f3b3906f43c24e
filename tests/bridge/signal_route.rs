//! `POST /api/tasks/{ik}/signals/{name}`: the same identity and ownership rules as the other
//! control routes (another owner's key is 404, byte for byte the same as an unknown key), 409
//! on a finished run, 413 past the payload limit, 400 for a bad name or bad JSON, 415 without
//! a JSON content type; a good one is durable when answered (202) and the run goes on with it.

use std::time::Duration;

use serde_json::json;
use taskflow::{UserContext, UserId};

use crate::support::{CountIn, Options, await_signal, client, server_with};

async fn send(
    base: &str,
    user: &str,
    ik: &str,
    name: &str,
    body: Option<(&str, String)>,
) -> (u16, String) {
    let mut req = client()
        .post(format!("{base}/api/tasks/{ik}/signals/{name}"))
        .header("x-forwarded-user", user);
    if let Some((content_type, body)) = body {
        req = req.header("content-type", content_type).body(body);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

fn json_body(v: &serde_json::Value) -> Option<(&'static str, String)> {
    Some(("application/json", v.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signal_route_keeps_the_control_rules_and_delivers_once() {
    let s = server_with(Options {
        payload_limit: 1024,
        ..Options::default()
    })
    .await;
    let ann = UserContext::new(UserId::new("ann").unwrap());
    let run = s
        .flow
        .as_user(&ann)
        .start(
            await_signal,
            CountIn {
                tag: "signal-route".into(),
                ..CountIn::default()
            },
        )
        .await
        .unwrap();
    let ik = run.idempotency_key.as_str().to_owned();
    let go = json!({"approve": true, "by": "ann"});

    // Another owner's key answers exactly like a key that does not exist.
    let (status, theirs) = send(&s.base, "bob", &ik, "go", json_body(&go)).await;
    assert_eq!(status, 404);
    let unknown = "A".repeat(ik.len());
    let (status, none) = send(&s.base, "bob", &unknown, "go", json_body(&go)).await;
    assert_eq!(status, 404);
    assert_eq!(theirs, none, "404 indistinguishable");

    // What is wrong with the request itself, said before anything is stored.
    let (status, body) = send(&s.base, "ann", &ik, "Not%20A%20Name", json_body(&go)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"path\":\"name\""), "{body}");
    let (status, body) = send(
        &s.base,
        "ann",
        &ik,
        "go",
        Some(("application/json", "{\"approve\":".into())),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = send(
        &s.base,
        "ann",
        &ik,
        "go",
        Some(("text/plain", "yes".into())),
    )
    .await;
    assert_eq!(status, 415);
    let huge = json!({"pad": "x".repeat(2000)});
    let (status, _) = send(&s.base, "ann", &ik, "go", json_body(&huge)).await;
    assert_eq!(status, 413);

    // The owner's signal: durable when answered, and the run finishes with its payload.
    let (status, body) = send(&s.base, "ann", &ik, "go", json_body(&go)).await;
    assert_eq!(status, 202, "{body}");
    let answered: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answered["idempotency_key"], ik);
    let output = tokio::time::timeout(Duration::from_secs(10), s.flow.as_user(&ann).wait(&run))
        .await
        .expect("the signal woke the run")
        .unwrap();
    assert_eq!(output, go, "delivered once, as sent");

    // A finished run takes no more.
    let (status, body) = send(&s.base, "ann", &ik, "go", json_body(&go)).await;
    assert_eq!(status, 409, "{body}");
    s.shutdown().await;
}
