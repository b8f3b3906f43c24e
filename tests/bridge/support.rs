//! A server on 127.0.0.1:0 with test tasks, and an SSE client built on `eventsource-stream`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use taskflow::prelude::*;
use taskflow::testing::TempDataDir;
use tokio::sync::watch;

#[events]
#[derive(Debug, Clone, PartialEq)]
pub enum Count {
    Tick { i: u32, big: i64 },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CountIn {
    pub tag: String,
    pub n: u32,
    pub sleep_ms: u64,
    pub hold: bool,
    pub fail: Option<String>,
    pub public_fail: bool,
    pub panic: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CountOut {
    pub n: u32,
    pub huge: u64,
}

/// Per-tag state shared with the handler.
pub struct Gate {
    pub release: watch::Sender<bool>,
    pub tokens: Mutex<Vec<String>>,
    pub progress: watch::Sender<u32>,
}

static GATES: LazyLock<Mutex<HashMap<String, Arc<Gate>>>> = LazyLock::new(Default::default);

pub fn gate(tag: &str) -> Arc<Gate> {
    GATES
        .lock()
        .unwrap()
        .entry(tag.to_owned())
        .or_insert_with(|| {
            Arc::new(Gate {
                release: watch::channel(false).0,
                tokens: Mutex::new(Vec::new()),
                progress: watch::channel(0).0,
            })
        })
        .clone()
}

impl Gate {
    pub async fn wait_progress(&self, n: u32) {
        let mut rx = self.progress.subscribe();
        tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|p| *p >= n))
            .await
            .expect("no progress in 20 s")
            .unwrap();
    }
}

/// Ticks `n` times (one step and one event each), then optionally holds, fails or panics.
#[task(name = "count", max_attempts = 1)]
pub async fn count(ctx: TaskContext<Count>, input: CountIn) -> Result<CountOut, TaskError> {
    let g = gate(&input.tag);
    if let Some(token) = ctx.user().and_then(|u| u.access_token()) {
        g.tokens
            .lock()
            .unwrap()
            .push(token.expose_secret().to_owned());
    }
    for i in 0..input.n {
        let sleep = input.sleep_ms;
        ctx.step("tick", || async move {
            if sleep > 0 {
                tokio::time::sleep(Duration::from_millis(sleep)).await;
            }
            Ok::<_, TaskError>(i)
        })
        .await?;
        ctx.emit(Count::Tick {
            i,
            big: 9_007_199_254_740_993,
        })
        .await?;
        g.progress.send_modify(|p| *p += 1);
    }
    if input.hold {
        let mut release = g.release.subscribe();
        let released = async move {
            let _ = release.wait_for(|r| *r).await;
        };
        tokio::select! {
            () = released => {}
            () = ctx.cancelled() => return Err(TaskError::new("stopped")),
        }
    }
    if let Some(message) = input.fail {
        let e = TaskError::new(message);
        return Err(if input.public_fail { e.public() } else { e });
    }
    if let Some(message) = input.panic {
        panic!("{message}");
    }
    Ok(CountOut {
        n: input.n,
        huge: u64::MAX,
    })
}

/// Needs the caller's live user context; holds until released.
#[task(name = "obo", on_behalf_of, max_attempts = 1)]
pub async fn obo(ctx: TaskContext<Count>, input: CountIn) -> Result<String, TaskError> {
    let g = gate(&input.tag);
    let user = ctx
        .user()
        .map(|u| u.id().as_str().to_owned())
        .ok_or_else(|| TaskError::permanent("no user context"))?;
    ctx.step("first", || async { Ok::<_, TaskError>(1) })
        .await?;
    g.progress.send_modify(|p| *p += 1);
    let mut release = g.release.subscribe();
    let released = async move {
        let _ = release.wait_for(|r| *r).await;
    };
    tokio::select! {
        () = released => Ok(user),
        () = ctx.cancelled() => Err(TaskError::new("stopped")),
    }
}

/// Waits for signal `go` and returns its payload.
#[task(name = "await-signal", max_attempts = 1)]
pub async fn await_signal(
    ctx: TaskContext<Count>,
    _input: CountIn,
) -> Result<serde_json::Value, TaskError> {
    ctx.wait_signal("go").await
}

/// A running server and its flow.
pub struct Server {
    pub base: String,
    pub flow: TaskFlow,
    pub dir: Arc<TempDataDir>,
    trigger: Option<tokio::sync::oneshot::Sender<()>>,
    pub handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub struct Options {
    pub production: bool,
    pub trust: bool,
    pub payload_limit: usize,
    pub rate_per_user: usize,
    pub dir: Option<Arc<TempDataDir>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            production: false,
            trust: true,
            payload_limit: 1024 * 1024,
            rate_per_user: 100,
            dir: None,
        }
    }
}

pub async fn server() -> Server {
    server_with(Options::default()).await
}

/// Serves `app` on 127.0.0.1:0 (plain `axum::serve`, no peer addresses) and returns its base URL.
pub async fn serve_app(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

pub async fn server_with(o: Options) -> Server {
    let dir = o.dir.unwrap_or_else(|| Arc::new(TempDataDir::new()));
    let builder = dir
        .builder()
        .register(count)
        .register(obo)
        .register(await_signal)
        .stop_grace(Duration::from_millis(200))
        .payload_limit(o.payload_limit)
        .start_rate_per_minute_per_user(o.rate_per_user)
        .environment(if o.production {
            taskflow::Environment::Production
        } else {
            taskflow::Environment::Development
        });
    let flow = builder.build().await.unwrap();
    // As the demo: anonymous requests act as the service identity (an explicit opt-in).
    let mut api = taskflow::axum::routes_with(flow.clone(), taskflow::axum::Anonymous::AsService);
    if o.trust {
        api = api.layer(taskflow::axum::ProxyTrust::new().layer(&flow));
    }
    let app = axum::Router::new()
        .nest("/api", api)
        .merge(taskflow::axum::metrics(flow.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let handle = tokio::spawn(taskflow::axum::serve_until(
        listener,
        app,
        flow.clone(),
        async move {
            let _ = rx.await;
        },
    ));
    Server {
        base,
        flow,
        dir,
        trigger: Some(tx),
        handle,
    }
}

impl Server {
    /// Triggers the same drain as SIGTERM and waits for the server to return.
    pub async fn shutdown(mut self) -> Arc<TempDataDir> {
        if let Some(t) = self.trigger.take() {
            let _ = t.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), &mut self.handle)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
        self.dir.clone()
    }

    pub fn trigger(&mut self) {
        if let Some(t) = self.trigger.take() {
            let _ = t.send(());
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// One parsed SSE event.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub id: String,
    pub event: String,
    pub data: serde_json::Value,
}

/// Reads every event of a streaming response until it ends.
pub async fn frames(response: reqwest::Response) -> Vec<Frame> {
    let mut stream = response.bytes_stream().eventsource();
    let mut out = Vec::new();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("stream stalled")
    {
        let e = e.unwrap();
        out.push(Frame {
            id: e.id,
            event: e.event,
            data: serde_json::from_str(&e.data).unwrap(),
        });
    }
    out
}

/// Reads events until `n` have arrived, then drops the connection.
pub async fn first_frames(response: reqwest::Response, n: usize) -> Vec<Frame> {
    let mut stream = response.bytes_stream().eventsource();
    let mut out = Vec::new();
    while out.len() < n {
        let e = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("stream stalled")
            .expect("stream ended early")
            .unwrap();
        out.push(Frame {
            id: e.id,
            event: e.event,
            data: serde_json::from_str(&e.data).unwrap(),
        });
    }
    out
}

/// Parses already-read SSE text with the same independent parser.
pub async fn parse_text(text: &str) -> Vec<Frame> {
    let bytes = axum::body::Bytes::from(text.to_owned());
    let mut stream =
        futures_util::stream::iter([Ok::<_, std::convert::Infallible>(bytes)]).eventsource();
    let mut out = Vec::new();
    while let Some(e) = stream.next().await {
        let e = e.unwrap();
        out.push(Frame {
            id: e.id,
            event: e.event,
            data: serde_json::from_str(&e.data).unwrap(),
        });
    }
    out
}

/// The ids of the frames that carry one (`ready` and `error` never do; an SSE parser repeats
/// the last id on them, as the spec says `lastEventId` persists).
pub fn ids(frames: &[Frame]) -> Vec<u64> {
    frames
        .iter()
        .filter(|f| !f.id.is_empty() && f.event != "ready" && f.event != "error")
        .map(|f| f.id.parse().unwrap())
        .collect()
}

pub fn names(frames: &[Frame]) -> Vec<&str> {
    frames.iter().map(|f| f.event.as_str()).collect()
}

pub async fn post(base: &str, input: &serde_json::Value) -> reqwest::Response {
    client()
        .post(format!("{base}/api/tasks/count"))
        .json(input)
        .send()
        .await
        .unwrap()
}

pub async fn post_as(base: &str, user: &str, input: &serde_json::Value) -> reqwest::Response {
    client()
        .post(format!("{base}/api/tasks/count"))
        .header("x-forwarded-user", user)
        .json(input)
        .send()
        .await
        .unwrap()
}

pub fn ik_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-taskflow-idempotency-key")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}
