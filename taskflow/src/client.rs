//! A typed Rust client for the task routes (feature `client`): starts or re-attaches to a run
//! and yields its events, reconnecting with `Last-Event-ID` so that no event is missed or seen
//! twice.
//!
//! ```no_run
//! # async fn demo() -> Result<(), taskflow::client::ClientError> {
//! use taskflow::TaskEvent;
//! use taskflow::client::{Client, ClientEvent};
//! # use taskflow::prelude::*;
//! # #[task] async fn count(_c: TaskContext<NoEvents>, n: u32) -> Result<u32, TaskError> { Ok(n) }
//! let client = Client::new("http://127.0.0.1:3000/api");
//! let mut run = client.start(count, &10).await?;
//! while let Some(event) = run.next().await {
//!     match event? {
//!         ClientEvent::Event(TaskEvent::Completed { output, .. }) => println!("done: {output}"),
//!         other => println!("{other:?}"),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Reconnection follows SPEC §8: after a connection drops before the run's end, wait 2 s × 2ⁿ
//! (capped at 64 s) plus 0–20 % jitter and reconnect with the last complete event's id; give
//! up after 3 failed attempts in a row; a connection that delivered `ready` resets the count.
//! Frames larger than the payload limit + 64 KiB are refused.

use std::marker::PhantomData;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use serde_json::Value;

use crate::engine::{TaskEvent, decode_event};
use crate::ids::{IdempotencyKey, Seq};
use crate::lifecycle::Lifecycle;
use crate::sse::{MAX_SAFE_INTEGER, parse_last_event_id};
use crate::status::StoredEvent;
use crate::task::Task;

/// Why the client stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an error before streaming (`{"error": {...}}`).
    #[error("HTTP {status}: {code}: {message}")]
    Http {
        /// The status code.
        status: u16,
        /// The error code (`invalid_input`, `not_found`, ...).
        code: String,
        /// The message.
        message: String,
        /// The input field at fault, for `invalid_input`.
        path: Option<String>,
    },
    /// Reconnecting failed `attempts` times in a row.
    #[error("gave up after {attempts} reconnection attempts: {last}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// A frame was larger than the limit.
    #[error("a frame is over {limit} bytes")]
    FrameTooLarge {
        /// The limit.
        limit: usize,
    },
    /// An event did not decode into the task's types.
    #[error("event {name} does not decode: {message}")]
    Decode {
        /// The event's name.
        name: String,
        /// What went wrong.
        message: String,
    },
}

/// What a run streams, typed by its task: a `ready` frame per connection, then the run's
/// events exactly as [`TaskFlow::subscribe_typed`](crate::TaskFlow::subscribe_typed) yields
/// them in-process.
#[non_exhaustive]
pub enum ClientEvent<T: Task> {
    /// The first frame of each connection.
    Ready {
        /// The run's key.
        idempotency_key: IdempotencyKey,
        /// Whether the request attached to an existing run.
        attached: bool,
    },
    /// A progress or lifecycle event of the run.
    Event(TaskEvent<T>),
}

impl<T: Task> std::fmt::Debug for ClientEvent<T>
where
    T::Events: std::fmt::Debug,
    T::Output: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ready {
                idempotency_key,
                attached,
            } => f
                .debug_struct("Ready")
                .field("idempotency_key", idempotency_key)
                .field("attached", attached)
                .finish(),
            Self::Event(e) => f.debug_tuple("Event").field(e).finish(),
        }
    }
}

/// A client of `taskflow::axum::routes`, mounted at `base` (e.g. `http://host/api`).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    headers: reqwest::header::HeaderMap,
    backoff_base: Duration,
    frame_limit: usize,
}

impl Client {
    /// A client of the routes at `base`.
    #[must_use]
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.into().trim_end_matches('/').to_owned(),
            headers: reqwest::header::HeaderMap::new(),
            backoff_base: Duration::from_secs(2),
            frame_limit: 1024 * 1024 + 64 * 1024,
        }
    }

    /// Sends `name: value` on every request (a proxy identity header, an auth header).
    ///
    /// # Panics
    /// When `name` or `value` is not a valid header.
    #[must_use]
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.insert(
            name,
            reqwest::header::HeaderValue::from_str(value).expect("a valid header value"),
        );
        self
    }

    /// The first reconnection delay (default 2 s; doubles, capped at 32×).
    #[must_use]
    pub fn backoff_base(mut self, base: Duration) -> Self {
        self.backoff_base = base;
        self
    }

    /// The server's payload limit (default 1 MiB); frames may be 64 KiB larger.
    #[must_use]
    pub fn payload_limit(mut self, bytes: usize) -> Self {
        self.frame_limit = bytes + 64 * 1024;
        self
    }

    /// Starts `task` with `input` (or attaches to its run) and streams it.
    ///
    /// # Errors
    /// [`ClientError::Http`] when the server refuses the request.
    pub async fn start<T: Task>(
        &self,
        task: T,
        input: &T::Input,
    ) -> Result<TaskStream<T>, ClientError> {
        let _ = task;
        let body = serde_json::to_vec(input).map_err(|e| ClientError::Decode {
            name: "input".into(),
            message: e.to_string(),
        })?;
        let mut stream = TaskStream::new(self.clone(), Target::Start(T::NAME, body));
        stream.connect_first().await?;
        Ok(stream)
    }

    /// Re-attaches to the run of `ik` and streams it from the start.
    ///
    /// # Errors
    /// [`ClientError::Http`] (404 for an unknown key).
    pub async fn attach<T: Task>(
        &self,
        task: T,
        ik: &IdempotencyKey,
    ) -> Result<TaskStream<T>, ClientError> {
        let _ = task;
        let mut stream = TaskStream::new(self.clone(), Target::Attach(ik.clone()));
        stream.connect_first().await?;
        Ok(stream)
    }
}

enum Target {
    Start(&'static str, Vec<u8>),
    Attach(IdempotencyKey),
}

type Frames = BoxStream<'static, Result<eventsource_stream::Event, String>>;

/// A run's events; reconnects by itself. See the module docs.
pub struct TaskStream<T> {
    client: Client,
    target: Target,
    ik: Option<IdempotencyKey>,
    last: Option<Seq>,
    frames: Option<Frames>,
    last_was_suspended: bool,
    done: bool,
    _task: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for TaskStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskStream")
            .field("ik", &self.ik)
            .field("last", &self.last)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// Retries per disconnect episode.
const RETRIES: u32 = 3;

impl<T: Task> TaskStream<T> {
    fn new(client: Client, target: Target) -> Self {
        let ik = match &target {
            Target::Attach(ik) => Some(ik.clone()),
            Target::Start(..) => None,
        };
        Self {
            client,
            target,
            ik,
            last: None,
            frames: None,
            last_was_suspended: false,
            done: false,
            _task: PhantomData,
        }
    }

    /// The run's key, once known.
    #[must_use]
    pub fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        self.ik.as_ref()
    }

    /// The last event id received.
    #[must_use]
    pub fn last_event_id(&self) -> Option<Seq> {
        self.last
    }

    async fn connect_first(&mut self) -> Result<(), ClientError> {
        match self.connect().await {
            Ok(()) => Ok(()),
            Err(Attempt::Refused(e)) => Err(e),
            Err(Attempt::Transient(_)) => self.reconnect().await,
        }
    }

    /// One connection attempt.
    async fn connect(&mut self) -> Result<(), Attempt> {
        let c = &self.client;
        let mut request = match (&self.ik, &self.target) {
            // Once the key is known, re-attach by GET: it never creates a run.
            (Some(ik), _) => c.http.get(format!("{}/tasks/{ik}/events", c.base)),
            (None, Target::Start(name, body)) => c
                .http
                .post(format!("{}/tasks/{name}", c.base))
                .header("content-type", "application/json")
                .body(body.clone()),
            (None, Target::Attach(ik)) => c.http.get(format!("{}/tasks/{ik}/events", c.base)),
        };
        request = request.headers(c.headers.clone());
        if let Some(last) = self.last {
            request = request.header("last-event-id", last.get().to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|e| Attempt::Transient(e.to_string()))?;
        let status = response.status();
        if status == reqwest::StatusCode::NO_CONTENT {
            // The server says we have seen the end already.
            self.done = true;
            return Ok(());
        }
        if !status.is_success() {
            let transient =
                status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let e = &body["error"];
            let error = ClientError::Http {
                status: status.as_u16(),
                code: e["code"].as_str().unwrap_or_default().to_owned(),
                message: e["message"].as_str().unwrap_or_default().to_owned(),
                path: e["path"].as_str().map(str::to_owned),
            };
            return Err(if transient {
                Attempt::Transient(error.to_string())
            } else {
                Attempt::Refused(error)
            });
        }
        let limit = c.frame_limit;
        let bytes = response.bytes_stream().map_err(|e| e.to_string()).scan(
            0usize,
            move |since_blank, chunk| {
                // Count bytes since the last blank line: one frame may not exceed the limit.
                let out = chunk.and_then(|chunk| {
                    for w in chunk.windows(2) {
                        *since_blank = if w == b"\n\n" { 0 } else { *since_blank + 1 };
                    }
                    if *since_blank > limit {
                        Err(format!("frame over {limit} bytes"))
                    } else {
                        Ok(chunk)
                    }
                });
                std::future::ready(Some(out))
            },
        );
        let frames = bytes.eventsource().map_err(|e| e.to_string()).boxed();
        self.frames = Some(frames);
        Ok(())
    }

    async fn reconnect(&mut self) -> Result<(), ClientError> {
        self.frames = None;
        let mut last = String::new();
        for attempt in 0..RETRIES {
            let factor = 1u32 << attempt.min(5);
            let delay = self.client.backoff_base * factor;
            let jitter = delay.mul_f64(jitter_fraction() * 0.2);
            tokio::time::sleep(delay + jitter).await;
            match self.connect().await {
                Ok(()) => return Ok(()),
                Err(Attempt::Refused(e)) => return Err(e),
                Err(Attempt::Transient(e)) => last = e,
            }
        }
        Err(ClientError::GaveUp {
            attempts: RETRIES,
            last,
        })
    }

    /// The next event; `None` after the run's end (or the end of a suspended run's stream).
    ///
    /// # Errors
    /// When reconnecting gave up, a frame was too large, or an event did not decode.
    pub async fn next(&mut self) -> Option<Result<ClientEvent<T>, ClientError>> {
        loop {
            if self.done {
                return None;
            }
            let Some(frames) = self.frames.as_mut() else {
                if let Err(e) = self.reconnect().await {
                    self.done = true;
                    return Some(Err(e));
                }
                continue;
            };
            match frames.next().await {
                Some(Ok(frame)) => match self.accept(frame) {
                    Ok(Some(event)) => return Some(Ok(event)),
                    Ok(None) => {}
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                },
                Some(Err(e)) if e.starts_with("frame over") => {
                    self.done = true;
                    return Some(Err(ClientError::FrameTooLarge {
                        limit: self.client.frame_limit,
                    }));
                }
                // Dropped (mid-frame or between frames), or ended without the run's end.
                Some(Err(_)) | None => {
                    if self.last_was_suspended {
                        self.done = true;
                        return None;
                    }
                    self.frames = None;
                }
            }
        }
    }

    fn accept(
        &mut self,
        frame: eventsource_stream::Event,
    ) -> Result<Option<ClientEvent<T>>, ClientError> {
        let decode_error = |name: &str, message: String| ClientError::Decode {
            name: name.to_owned(),
            message,
        };
        let data: Value = serde_json::from_str(&frame.data)
            .map_err(|e| decode_error(&frame.event, e.to_string()))?;
        if frame.event == "ready" {
            let ik = data["idempotency_key"]
                .as_str()
                .and_then(IdempotencyKey::parse)
                .ok_or_else(|| decode_error("ready", "no idempotency key".into()))?;
            self.ik = Some(ik.clone());
            return Ok(Some(ClientEvent::Ready {
                idempotency_key: ik,
                attached: data["attached"].as_bool().unwrap_or(false),
            }));
        }
        if frame.event == "error" {
            // `server_shutting_down` and the like: the connection ends; reconnect later.
            self.frames = None;
            return Ok(None);
        }
        let Some(seq) = parse_last_event_id(&frame.id) else {
            return Err(decode_error(&frame.event, "event without an id".into()));
        };
        if self.last.is_some_and(|last| seq <= last) {
            // Never sent by taskflow after a correct Last-Event-ID; drop rather than repeat.
            return Ok(None);
        }
        self.last = Some(seq);
        self.last_was_suspended = frame.event == Lifecycle::SUSPENDED;
        if crate::lifecycle::is_terminal_name(&frame.event) {
            self.done = true;
        }
        let event = decode_lenient::<T>(StoredEvent {
            seq,
            name: frame.event.clone(),
            data,
        })
        .map_err(|e| decode_error(&frame.event, e))?;
        Ok(Some(ClientEvent::Event(event)))
    }
}

enum Attempt {
    Transient(String),
    Refused(ClientError),
}

fn jitter_fraction() -> f64 {
    // Jitter needs no cryptographic quality: the clock's nanoseconds spread reconnects.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1000) / 1000.0
}

/// Decodes as sent; if that fails, once more with JS-safe integer strings turned back into
/// numbers (the bridge writes integers beyond ±(2^53 − 1) as strings).
fn decode_lenient<T: Task>(event: StoredEvent) -> Result<TaskEvent<T>, String> {
    match decode_event::<T>(event.clone()) {
        Ok(e) => Ok(e),
        Err(first) => {
            let mut numbers = event;
            unstring_integers(&mut numbers.data);
            decode_event::<T>(numbers).map_err(|_| first.to_string())
        }
    }
}

fn unstring_integers(value: &mut Value) {
    match value {
        Value::String(s) => {
            let big = s.parse::<u64>().is_ok_and(|n| n > MAX_SAFE_INTEGER)
                || s.parse::<i64>()
                    .is_ok_and(|n| n.unsigned_abs() > MAX_SAFE_INTEGER);
            if big && let Ok(n) = s.parse::<serde_json::Number>() {
                *value = Value::Number(n);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unstring_integers),
        Value::Object(map) => map.values_mut().for_each(unstring_integers),
        _ => {}
    }
}
