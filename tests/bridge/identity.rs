//! Owners: isolation, 404s identical to unknown keys, the token never persisted or logged.

use serde_json::json;
use taskflow::TaskFlow;
use taskflow::testing::SimulateCrash;

use crate::support::*;

async fn bytes(r: reqwest::Response) -> (u16, Vec<u8>) {
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_owners_key_is_byte_identical_to_an_unknown_key_on_every_route() {
    let s = server().await;
    let r = post_as(&s.base, "ann", &json!({"tag": "id-owner", "n": 1})).await;
    let ik = ik_of(&r);
    frames(r).await;
    let unknown = "A".repeat(43);
    let c = client();
    for (method, suffix) in [
        ("GET", ""),
        ("GET", "/events"),
        ("POST", "/stop"),
        ("POST", "/resume"),
        ("POST", "/cancel"),
    ] {
        let send = |key: String, user: Option<&'static str>| {
            let url = format!("{}/api/tasks/{key}{suffix}", s.base);
            let mut req = if method == "GET" {
                c.get(url)
            } else {
                c.post(url)
            };
            if let Some(u) = user {
                req = req.header("x-forwarded-user", u);
            }
            req.send()
        };
        let reference = bytes(send(unknown.clone(), Some("bob")).await.unwrap()).await;
        assert_eq!(reference.0, 404);
        assert_eq!(
            bytes(send(ik.clone(), Some("bob")).await.unwrap()).await,
            reference
        );
        assert_eq!(
            bytes(send(ik.clone(), None).await.unwrap()).await,
            reference,
            "service"
        );
        assert_eq!(
            bytes(send("not-a-key".into(), Some("bob")).await.unwrap()).await,
            reference
        );
    }
    // An unknown task name answers the same bytes too.
    let r = client()
        .post(format!("{}/api/tasks/no-such-task", s.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        bytes(r).await.1,
        br#"{"error":{"code":"not_found","message":"not found"}}"#.to_vec()
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_identical_posts_get_two_keys_and_lists_are_separate() {
    let s = server().await;
    let input = json!({"tag": "id-two", "n": 1});
    let ann = post_as(&s.base, "ann", &input).await;
    let bob = post_as(&s.base, "bob", &input).await;
    let service = post(&s.base, &input).await;
    let keys = [ik_of(&ann), ik_of(&bob), ik_of(&service)];
    assert_ne!(keys[0], keys[1]);
    assert_ne!(keys[0], keys[2]);
    assert_ne!(keys[1], keys[2]);
    for r in [ann, bob, service] {
        let f = frames(r).await;
        assert_eq!(f[0].data["attached"], false);
    }
    for (user, key) in [
        (Some("ann"), &keys[0]),
        (Some("bob"), &keys[1]),
        (None, &keys[2]),
    ] {
        let mut req = client().get(format!("{}/api/tasks", s.base));
        if let Some(u) = user {
            req = req.header("x-forwarded-user", u);
        }
        let list: serde_json::Value = req.send().await.unwrap().json().await.unwrap();
        let listed: Vec<&str> = list["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["idempotency_key"].as_str().unwrap())
            .collect();
        assert_eq!(listed, [key.as_str()], "{user:?} sees only its own run");
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_identity_headers_are_401() {
    let s = server().await;
    let long = "u".repeat(257);
    for (name, value) in [
        ("x-forwarded-user", ""),
        ("x-forwarded-user", long.as_str()),
        ("x-forwarded-email", ""),
    ] {
        let mut req = client()
            .post(format!("{}/api/tasks/count", s.base))
            .json(&json!({"tag": "id-401", "n": 1}));
        if name != "x-forwarded-user" {
            req = req.header("x-forwarded-user", "ann");
        }
        let r = req.header(name, value).send().await.unwrap();
        assert_eq!(r.status(), 401, "{name}: {value:.10}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthenticated");
    }
    // Not UTF-8.
    let r = client()
        .post(format!("{}/api/tasks/count", s.base))
        .header(
            "x-forwarded-user",
            reqwest::header::HeaderValue::from_bytes(&[0xff, 0xfe]).unwrap(),
        )
        .json(&json!({"tag": "id-401", "n": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_headers_are_ignored() {
    let s = server_with(Options {
        trust: false,
        ..Options::default()
    })
    .await;
    let input = json!({"tag": "id-untrusted", "n": 1});
    let as_ann = post_as(&s.base, "ann", &input).await;
    let service = post(&s.base, &input).await;
    assert_eq!(
        ik_of(&as_ann),
        ik_of(&service),
        "both ran as the service identity"
    );
    frames(as_ann).await;
    frames(service).await;
    s.shutdown().await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Captures everything tracing writes, at every level.
#[derive(Clone, Default)]
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_token_never_reaches_files_logs_or_debug() {
    use base64::Engine as _;
    const TOKEN: &str = "eyJhbGciOi.SECRET-TOKEN-4f2a.sig";
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // Global, so spans and events from every runtime and blocking thread are captured.
    tracing::subscriber::set_global_default(subscriber).expect("only this test sets it");
    let s = server().await;
    let r = client()
        .post(format!("{}/api/tasks/count", s.base))
        .header("x-forwarded-user", "ann")
        .header("x-forwarded-access-token", TOKEN)
        .json(&json!({"tag": "id-token", "n": 2}))
        .send()
        .await
        .unwrap();
    let f = frames(r).await;
    assert_eq!(f.last().unwrap().event, "completed");
    // Positive control: the handler saw the token.
    assert_eq!(*gate("id-token").tokens.lock().unwrap(), [TOKEN]);
    let debug = format!("{:?}", s.flow);
    let dir = s.shutdown().await;
    let forms = [
        TOKEN.as_bytes().to_vec(),
        base64::engine::general_purpose::STANDARD
            .encode(TOKEN)
            .into_bytes(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(TOKEN)
            .into_bytes(),
        hex(TOKEN.as_bytes()).into_bytes(),
    ];
    let logs = capture.0.lock().unwrap().clone();
    assert!(!logs.is_empty(), "control: tracing output was captured");
    let mut haystacks = vec![
        ("tracing output".to_owned(), logs),
        ("Debug".to_owned(), debug.into_bytes()),
    ];
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        haystacks.push((path.display().to_string(), std::fs::read(&path).unwrap()));
    }
    for (what, bytes) in haystacks {
        for form in &forms {
            assert!(
                !bytes.windows(form.len()).any(|w| w == form.as_slice()),
                "{what} holds the token"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_behalf_of_needs_a_user_and_gets_a_fresh_context_after_a_restart() {
    let s = server().await;
    let url = format!("{}/api/tasks/obo", s.base);
    let input = json!({"tag": "id-obo"});
    // Without a user: 401.
    let r = client().post(&url).json(&input).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated");
    // With a user: runs with the live context.
    let r = client()
        .post(&url)
        .header("x-forwarded-user", "ann")
        .json(&input)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ik = ik_of(&r);
    drop(r);
    gate("id-obo").wait_progress(1).await;
    // Restart: the live context is gone, so the run waits for its user.
    s.flow.crash();
    let dir = s.dir.clone();
    drop(s);
    let s = server_with(Options {
        dir: Some(dir),
        ..Options::default()
    })
    .await;
    let status: serde_json::Value = client()
        .get(format!("{}/api/tasks/{ik}", s.base))
        .header("x-forwarded-user", "ann")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "suspended");
    assert_eq!(status["suspended_reason"], "user_context_required");
    // A fresh authenticated POST by the same user supplies a new context and resumes.
    let r = client()
        .post(format!("{}/api/tasks/obo", s.base))
        .header("x-forwarded-user", "ann")
        .json(&input)
        .send()
        .await
        .unwrap();
    assert_eq!(ik_of(&r), ik);
    let reader = tokio::spawn(frames(r));
    gate("id-obo").wait_progress(2).await;
    gate("id-obo").release.send_replace(true);
    let f = reader.await.unwrap();
    assert_eq!(f.last().unwrap().event, "completed");
    assert_eq!(f.last().unwrap().data, json!({"result": "ann"}));
    s.shutdown().await;
}

/// A server whose routes sit behind `trust`; `connect_info` as `serve` provides it.
async fn trusted_server(
    trust: taskflow::axum::ProxyTrust,
    connect_info: bool,
) -> (String, TaskFlow, taskflow::testing::TempDataDir) {
    let dir = taskflow::testing::TempDataDir::new();
    let flow = dir.builder().register(count).build().await.unwrap();
    let app: axum::Router = axum::Router::new()
        .nest("/api", taskflow::axum::routes(flow.clone()))
        .layer(trust.layer(&flow));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    if connect_info {
        tokio::spawn(taskflow::axum::serve_until(
            listener,
            app,
            flow.clone(),
            std::future::pending(),
        ));
    } else {
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    (base, flow, dir)
}

async fn list_as(base: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut req = client().get(format!("{base}/api/tasks"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_trust_by_peer_and_by_secret_refuses_what_it_does_not_trust() {
    use taskflow::axum::ProxyTrust;
    let loopback: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let other: std::net::IpAddr = "10.0.0.2".parse().unwrap();
    let user = [("x-forwarded-user", "ann")];

    let (base, flow, _dir) = trusted_server(ProxyTrust::new().from_peers([loopback]), true).await;
    assert_eq!(list_as(&base, &user).await.0, 200, "trusted peer");
    flow.shutdown().await.unwrap();

    let (base, flow, _dir) = trusted_server(ProxyTrust::new().from_peers([other]), true).await;
    let (status, body) = list_as(&base, &user).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    flow.shutdown().await.unwrap();

    // Misconfigured: peers listed but the server gives no peer addresses. Never a quiet
    // downgrade to the service identity.
    let (base, flow, _dir) = trusted_server(ProxyTrust::new().from_peers([loopback]), false).await;
    assert_eq!(list_as(&base, &user).await.0, 401, "no peer address");
    assert_eq!(list_as(&base, &[]).await.0, 401, "no peer address, no user");
    flow.shutdown().await.unwrap();

    let trust = ProxyTrust::new()
        .with_secret_header("X-Proxy-Secret", "s3cret")
        .header_names("X-User", "X-Mail", "X-Token");
    let (base, flow, _dir) = trusted_server(trust, true).await;
    let (status, _) = list_as(&base, &[("x-proxy-secret", "s3cret"), ("x-user", "bob")]).await;
    assert_eq!(status, 200, "right secret, custom user header");
    for wrong in [
        vec![("x-proxy-secret", "s3cre"), ("x-user", "bob")],
        vec![("x-proxy-secret", "s3cret!"), ("x-user", "bob")],
        vec![("x-user", "bob")],
    ] {
        assert_eq!(list_as(&base, &wrong).await.0, 401, "{wrong:?}");
    }
    // The default header name means nothing under custom names: no user, so 401.
    let (status, _) = list_as(
        &base,
        &[("x-proxy-secret", "s3cret"), ("x-forwarded-user", "eve")],
    )
    .await;
    assert_eq!(status, 401);
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_routes_refuse_anonymous_requests_on_every_route() {
    // `routes` without a user provider and without the anonymous opt-in.
    let (base, flow, _dir) = {
        let dir = taskflow::testing::TempDataDir::new();
        let flow = dir.builder().register(count).build().await.unwrap();
        let app: axum::Router =
            axum::Router::new().nest("/api", taskflow::axum::routes(flow.clone()));
        let base = serve_app(app).await;
        (base, flow, dir)
    };
    // A service-owned run exists: anonymous callers must not reach it.
    let run = flow
        .start(
            count,
            CountIn {
                tag: "anon".into(),
                n: 1,
                ..CountIn::default()
            },
        )
        .await
        .unwrap();
    flow.wait(&run).await.unwrap();
    let ik = run.idempotency_key.as_str().to_owned();
    let c = client();
    let requests = [
        c.get(format!("{base}/api/tasks")),
        c.get(format!("{base}/api/tasks/{ik}")),
        c.get(format!("{base}/api/tasks/{ik}/events")),
        c.post(format!("{base}/api/tasks/{ik}/stop")),
        c.post(format!("{base}/api/tasks/{ik}/resume")),
        c.post(format!("{base}/api/tasks/{ik}/cancel")),
        c.post(format!("{base}/api/tasks/count"))
            .json(&json!({"tag": "anon", "n": 1})),
    ];
    for request in requests {
        let r = request.send().await.unwrap();
        let url = r.url().to_string();
        assert_eq!(r.status(), 401, "{url}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthenticated", "{url}");
    }
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn an_unrestricted_proxy_trust_warns_in_production_only() {
    use taskflow::axum::ProxyTrust;
    let warnings = |environment: taskflow::Environment| {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        async move {
            let dir = taskflow::testing::TempDataDir::new();
            let flow = dir
                .builder()
                .environment(environment)
                .build()
                .await
                .unwrap();
            // `layer` runs on this thread, under this test's subscriber only.
            tracing::subscriber::with_default(subscriber, || {
                let _ = ProxyTrust::new().layer(&flow);
                let _ = ProxyTrust::new()
                    .from_peers(["127.0.0.1".parse().unwrap()])
                    .layer(&flow);
                let _ = ProxyTrust::new()
                    .with_secret_header("x-s", "v")
                    .layer(&flow);
            });
            flow.shutdown().await.unwrap();
            let text = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
            text.matches("trusted from any peer in production").count()
        }
    };
    assert_eq!(warnings(taskflow::Environment::Production).await, 1);
    assert_eq!(warnings(taskflow::Environment::Development).await, 0);
}
