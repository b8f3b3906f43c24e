//! [`TaskStream`]: one run's events over SSE, reconnecting with `Last-Event-ID` and jittered
//! backoff (SPEC §8), never yielding an event twice.

use std::marker::PhantomData;

use eventsource_stream::Eventsource;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::lenient::decode_lenient;
use super::{Client, ClientError, ClientEvent};
use crate::ids::{IdempotencyKey, Seq};
use crate::lifecycle::Lifecycle;
use crate::sse::parse_last_event_id;
use crate::status::StoredEvent;
use crate::task::Task;

/// Marks the byte stream's error for a frame over the limit.
const FRAME_OVER: &str = "taskflow: frame over";

pub(super) enum Target {
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
    pub(super) fn new(client: Client, target: Target) -> Self {
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

    pub(super) async fn connect_first(&mut self) -> Result<(), ClientError> {
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
                        Err(format!("{FRAME_OVER} {limit} bytes"))
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
                // The SSE parser wraps the transport's error ("Transport error: ..."), so
                // look for the marker anywhere in it.
                Some(Err(e)) if e.contains(FRAME_OVER) => {
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
