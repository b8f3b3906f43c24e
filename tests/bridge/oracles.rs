//! What each reader of untrusted bytes must do with any input, as plain functions: the
//! proptest properties in `fuzz.rs` and the `cargo fuzz` targets in `fuzz/` (which include this
//! file by path) run the same checks. Each returns `Err` with what went wrong; a panic inside
//! taskflow is a failure of its own.

// The fuzz targets use all of it; the properties in `fuzz.rs` part of it.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use taskflow::client::{Client, ClientError};
use taskflow::prelude::*;
use taskflow::sse::parse_last_event_id;
use taskflow::testing::{PowerCutBackend, TempDataDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[events]
#[derive(Debug, Clone)]
pub enum OracleEvent {
    Tick { i: u32 },
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, JsonSchema)]
pub struct OracleIn {
    pub n: u32,
}

/// The task the oracles' routes and client speak to: up to 3 ticks, then one step.
#[task(name = "oracle")]
pub async fn oracle_task(ctx: TaskContext<OracleEvent>, input: OracleIn) -> Result<u32, TaskError> {
    for i in 0..input.n.min(3) {
        ctx.emit(OracleEvent::Tick { i }).await?;
    }
    let n = input.n;
    ctx.step("count", || async move { Ok::<_, TaskError>(n) })
        .await
}

/// `Last-Event-ID`: `Some(n)` exactly for 1–16 ASCII digits worth at most 2^53 − 1, and then
/// their value; `None` for everything else.
pub fn last_event_id(input: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(input);
    let parsed = parse_last_event_id(&text);
    let digits = !text.is_empty() && text.len() <= 16 && text.bytes().all(|b| b.is_ascii_digit());
    let expected = digits
        .then(|| text.parse::<u64>().ok())
        .flatten()
        .filter(|n| *n < (1 << 53));
    if parsed.map(|s| s.get()) != expected {
        return Err(format!(
            "{text:?} parsed as {parsed:?}, expected {expected:?}"
        ));
    }
    Ok(())
}

/// A redb image holding one finished run of [`oracle_task`] with one event.
pub async fn image_with_one_run() -> Vec<u8> {
    let dir = TempDataDir::new();
    let backend = PowerCutBackend::from_image(Vec::new());
    let flow = TaskFlow::builder()
        .storage_backend(dir.path(), backend.clone())
        .register(oracle_task)
        .build()
        .await
        .unwrap();
    let run = flow.start(oracle_task, OracleIn { n: 1 }).await.unwrap();
    flow.wait(&run).await.unwrap();
    flow.shutdown().await.unwrap();
    backend.image()
}

/// Which stored record [`stored_record`] overwrites.
#[derive(Debug, Clone, Copy)]
pub enum Record {
    Run,
    Step,
    Event,
}

/// Overwrites one stored record of `base` (an [`image_with_one_run`]) with `garbage` and reads
/// the store back: it opens, and reading it is either fine (the bytes happened to decode) or an
/// error naming the record (the run `t1`, its step, or the event's seq). Never a panic.
pub fn stored_record(base: &[u8], record: Record, garbage: &[u8]) -> Result<(), String> {
    use redb::{ReadableDatabase, ReadableTable, TableDefinition};
    let backend = PowerCutBackend::from_image(base.to_vec());
    {
        let db = redb::Builder::new()
            .create_with_backend(backend.clone())
            .map_err(|e| e.to_string())?;
        let txn = db.begin_write().map_err(|e| e.to_string())?;
        match record {
            Record::Run => {
                let mut t = txn
                    .open_table(TableDefinition::<u64, &[u8]>::new("tasks"))
                    .unwrap();
                t.insert(1, garbage).unwrap();
            }
            Record::Step => {
                let mut t = txn
                    .open_table(TableDefinition::<(u64, &str), &[u8]>::new("steps"))
                    .unwrap();
                let key = t.first().unwrap().map(|(k, _)| k.value().1.to_owned());
                let key = key.ok_or("the image has no step")?;
                t.insert((1, key.as_str()), garbage).unwrap();
            }
            Record::Event => {
                let mut t = txn
                    .open_table(TableDefinition::<(&str, u64), &[u8]>::new("events"))
                    .unwrap();
                let key = t.first().unwrap().map(|(k, _)| k.value().0.to_owned());
                let key = key.ok_or("the image has no event")?;
                t.insert((key.as_str(), 1), garbage).unwrap();
            }
        }
        txn.commit().map_err(|e| e.to_string())?;
        drop(db.begin_read());
    }
    let dir = std::env::temp_dir();
    let store =
        taskflow::store::RedbStore::open_on(&dir, PowerCutBackend::from_image(backend.image()))
            .map_err(|e| format!("the image no longer opens: {e}"))?;
    let read = store.contents();
    drop(store);
    match (read, record) {
        (Ok(_), _) => Ok(()),
        (Err(e), Record::Run | Record::Step) if e.to_string().contains("t1") => Ok(()),
        (Err(e), Record::Event) if e.to_string().contains("event 1") => Ok(()),
        (Err(e), _) => Err(format!(
            "{record:?}: the error does not name the record: {e}"
        )),
    }
}

/// The typed SSE client reads `body` after a valid `ready` frame from a server that then closes
/// (and refuses the reconnects): it yields events or typed errors and ends, in time, never
/// panicking.
pub async fn client_reads(body: Vec<u8>) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let mut first = Some(body);
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut request = vec![0u8; 8192];
            let _ = conn.read(&mut request).await;
            if let Some(body) = first.take() {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\nevent: ready\ndata: {{\"idempotency_key\":\"{}\",\"attached\":false}}\n\n",
                    "A".repeat(43)
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(&body).await;
            }
        }
    });
    let read = async {
        let client = Client::new(base).backoff_base(Duration::from_millis(1));
        let mut stream = match client.start(oracle_task, &OracleIn { n: 1 }).await {
            Ok(stream) => stream,
            Err(e) => return Err(format!("the first connection failed: {e}")),
        };
        let mut items = 0usize;
        while let Some(item) = stream.next().await {
            items += 1;
            if let Err(ClientError::GaveUp { .. }) = item {
                break;
            }
            if items > 100_000 {
                return Err("the stream never ends".into());
            }
        }
        Ok(())
    };
    let result = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or_else(|_| Err("the client hung".into()));
    server.abort();
    result
}

/// The real routes (with proxy identity, as the demo mounts them) on a real socket.
pub struct Routes {
    pub base: String,
    pub flow: TaskFlow,
    _dir: TempDataDir,
    http: reqwest::Client,
}

/// Starts [`Routes`] for [`oracle_task`] on `127.0.0.1:0`.
pub async fn routes() -> Routes {
    let dir = TempDataDir::new();
    let flow = dir.builder().register(oracle_task).build().await.unwrap();
    let app = taskflow::axum::routes_with(flow.clone(), taskflow::axum::Anonymous::AsService)
        .layer(taskflow::axum::ProxyTrust::new().layer(&flow));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Routes {
        base,
        flow,
        _dir: dir,
        http: reqwest::Client::new(),
    }
}

impl Routes {
    /// A POST of `body` starting the task: answered 200, 400, 413, 415 or 429, nothing else.
    pub async fn post_body(&self, body: Vec<u8>, json: bool) -> Result<(), String> {
        let mut request = self
            .http
            .post(format!("{}/tasks/oracle", self.base))
            .body(body);
        if json {
            request = request.header("content-type", "application/json");
        }
        let status = request.send().await.map_err(|e| e.to_string())?.status();
        if [200, 400, 413, 415, 429].contains(&status.as_u16()) {
            Ok(())
        } else {
            Err(format!("a body was answered {status}"))
        }
    }

    /// A listing with these identity headers (those that are valid header values): 200, 400
    /// or 401, nothing else.
    pub async fn list_as(&self, user: &[u8], email: &[u8], token: &[u8]) -> Result<(), String> {
        let mut request = self.http.get(format!("{}/tasks", self.base));
        for (name, value) in [
            ("x-forwarded-user", user),
            ("x-forwarded-email", email),
            ("x-forwarded-access-token", token),
        ] {
            if let Ok(v) = reqwest::header::HeaderValue::from_bytes(value) {
                request = request.header(name, v);
            }
        }
        let status = request.send().await.map_err(|e| e.to_string())?.status();
        if [200, 400, 401].contains(&status.as_u16()) {
            Ok(())
        } else {
            Err(format!("identity headers were answered {status}"))
        }
    }
}
