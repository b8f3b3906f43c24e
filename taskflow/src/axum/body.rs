//! The SSE body of one client: `retry:` and `ready`, then the run's frames (many per write
//! when the client is behind), keep-alives, and the terminal or error frame.
//!
//! The body is a stream that hyper polls when the socket can take more: it reads the run's
//! subscription itself, with no task or channel of its own, so an idle stream costs its
//! subscription, one timer and this struct. A lone live frame goes out as the bytes rendered
//! once for every subscriber of the run (no copy); a client that is behind (a replay, a
//! burst) gets up to [`BATCH_FRAMES`] frames per write.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use tokio::time::{Instant, Sleep};

use super::http_error::MASKED;
use super::stream::StreamGuard;
use crate::engine::port::{Port, SharedEvent};
use crate::engine::{Environment, Scope};
use crate::error::StoreError;
use crate::ids::{IdempotencyKey, Seq};
use crate::lifecycle::Lifecycle;
use crate::sse::{
    needs_js_safe_integers, write_comment, write_event, write_json_event, write_retry,
};
use crate::status::{StoredEvent, TaskState};
use crate::{EventSubscription, sse};

/// Client reconnection delay announced in the first frame.
const RETRY_MILLIS: u64 = 2000;

/// At most this many frames, or about this many bytes, go into one write.
const BATCH_FRAMES: usize = 512;
const BATCH_BYTES: usize = 128 * 1024;

/// What a stream is doing.
enum Phase {
    /// Nothing written yet: `retry:` and `ready` come first.
    Opening,
    /// Writing the run's frames as they come.
    Streaming,
    /// A `suspended` frame was written: whether it is the run's current state (then the
    /// stream ends) is being looked up.
    Checking(Pin<Box<dyn Future<Output = bool> + Send>>),
    /// One last frame (an error), if any, then the end.
    Closing(Option<Bytes>),
    Done,
}

/// How the frame just added bears on the stream.
enum After {
    More,
    /// The run's terminal event: the stream ends after it.
    End,
    /// A `suspended` event of the current run: the stream ends if it is the newest state.
    Suspended(Seq),
}

/// Why a batch stopped early.
enum Stop {
    /// The subscription ended: the run is over or the flow shuts down.
    Closed,
    /// Reading the log failed.
    Failed(StoreError),
}

/// The frames of one poll: a single shared frame as is, several copied into one buffer.
enum Batch {
    Empty,
    One(Bytes),
    Many(Vec<u8>),
}

impl Batch {
    fn push(&mut self, frame: Bytes) {
        match self {
            Self::Empty => *self = Self::One(frame),
            Self::One(first) => {
                let mut many = Vec::with_capacity((first.len() + frame.len()) * 8);
                many.extend_from_slice(first);
                many.extend_from_slice(&frame);
                *self = Self::Many(many);
            }
            Self::Many(many) => many.extend_from_slice(&frame),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::One(b) => b.len(),
            Self::Many(v) => v.len(),
        }
    }

    fn into_bytes(self) -> Option<Bytes> {
        match self {
            Self::Empty => None,
            Self::One(b) => Some(b),
            Self::Many(v) => Some(Bytes::from(v)),
        }
    }
}

/// What the body needs to open and render: the stream's request, settled before it starts.
pub(super) struct Opened {
    pub(super) port: Port,
    pub(super) scope: Scope,
    pub(super) ik: IdempotencyKey,
    pub(super) attached: bool,
    pub(super) run_first_seq: Seq,
    pub(super) keep_alive: Duration,
    pub(super) js_safe: bool,
}

/// The SSE response body of one client.
pub(super) struct SseBody {
    opened: Opened,
    subscription: EventSubscription,
    phase: Phase,
    /// Fires at the earliest moment a keep-alive may be due; rearmed lazily from `wrote`.
    quiet: Pin<Box<Sleep>>,
    /// When the last frame went out.
    wrote: Instant,
    /// `bridge_stream`, entered while the body is polled.
    span: tracing::Span,
    /// Dropped with the body: tells the engine the client left.
    _guard: StreamGuard,
}

impl SseBody {
    pub(super) fn new(
        opened: Opened,
        subscription: EventSubscription,
        span: tracing::Span,
        guard: StreamGuard,
    ) -> Self {
        let now = Instant::now();
        Self {
            span,
            quiet: Box::pin(tokio::time::sleep_until(now + opened.keep_alive)),
            opened,
            subscription,
            phase: Phase::Opening,
            wrote: now,
            _guard: guard,
        }
    }

    fn opening_frame(&self) -> Bytes {
        let mut first = String::new();
        write_retry(&mut first, RETRY_MILLIS);
        let ready = serde_json::json!({
            "idempotency_key": self.opened.ik.as_str(),
            "attached": self.opened.attached,
        });
        let _ = write_event(&mut first, None, "ready", &ready.to_string());
        Bytes::from(first)
    }

    /// The next write: the frames at hand, a keep-alive when the stream was quiet for the
    /// keep-alive period, or `Pending`.
    fn poll_frames(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut next = self.subscription.poll_next_shared(cx);
        if next.is_pending() {
            return self.poll_keep_alive(cx).map(Some);
        }
        let mut batch = Batch::Empty;
        let mut frames = 0;
        let stop = loop {
            let shared = match next {
                Poll::Pending => break None,
                Poll::Ready(None) => break Some(Stop::Closed),
                Poll::Ready(Some(Err(e))) => break Some(Stop::Failed(e)),
                Poll::Ready(Some(Ok(shared))) => shared,
            };
            match self.add_frame(&mut batch, &shared) {
                After::More => {}
                After::End => {
                    self.phase = Phase::Done;
                    break None;
                }
                After::Suspended(seq) => {
                    self.phase = Phase::Checking(Box::pin(is_newest_suspension(
                        self.opened.port.clone(),
                        self.opened.scope.clone(),
                        self.opened.ik.clone(),
                        seq,
                    )));
                    break None;
                }
            }
            frames += 1;
            if frames >= BATCH_FRAMES || batch.len() >= BATCH_BYTES {
                break None;
            }
            next = self.subscription.poll_next_shared(cx);
        };
        match stop {
            None => {}
            Some(Stop::Closed) => {
                let frame = self
                    .opened
                    .port
                    .is_shutting_down()
                    .then(|| error_frame("server_shutting_down", "server_shutting_down"));
                self.phase = Phase::Closing(frame);
            }
            Some(Stop::Failed(e)) => {
                tracing::error!(error = %e, "reading the event log failed mid-stream");
                // The codes of the HTTP errors: the storage failed, or (data that does not
                // decode) something else did.
                let code = match e {
                    StoreError::Io(_) | StoreError::FailStopped | StoreError::Closed => {
                        "storage_unavailable"
                    }
                    _ => "internal",
                };
                let message = self.mask(&e.to_string());
                self.phase = Phase::Closing(Some(error_frame(&message, code)));
            }
        }
        match batch.into_bytes() {
            Some(bytes) => {
                self.wrote = Instant::now();
                Poll::Ready(Some(bytes))
            }
            // Nothing to write, and the phase moved on: the caller polls again.
            None => Poll::Ready(None),
        }
    }

    /// `: hb` once nothing was written for the keep-alive period.
    fn poll_keep_alive(&mut self, cx: &mut Context<'_>) -> Poll<Bytes> {
        loop {
            if self.quiet.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let due = self.wrote + self.opened.keep_alive;
            let now = Instant::now();
            if now >= due {
                self.wrote = now;
                self.quiet.as_mut().reset(now + self.opened.keep_alive);
                let mut frame = String::new();
                write_comment(&mut frame, "hb");
                return Poll::Ready(Bytes::from(frame));
            }
            // A frame went out since the timer was set: wait the rest of the period.
            self.quiet.as_mut().reset(due);
        }
    }

    /// Adds `shared`'s frame to `batch`; what it means for the stream.
    fn add_frame(&self, batch: &mut Batch, shared: &Arc<SharedEvent>) -> After {
        let event = &shared.event;
        let js_safe = self.opened.js_safe;
        let lifecycle = match event.lifecycle() {
            Some(Ok(l)) => Some(l),
            Some(Err(e)) => {
                tracing::error!(error = %e, seq = %event.seq, "lifecycle event skipped: bad payload");
                return After::More;
            }
            None => None,
        };
        match &lifecycle {
            // `failed` is rendered per client: its message may be masked, its flag dropped.
            Some(failed @ Lifecycle::Failed { .. }) => {
                let data = failed.wire_data(self.is_production());
                batch.push(render(event, &data, js_safe));
            }
            // The default rendering: done once per event, shared by every subscriber.
            _ => batch.push(
                shared.frames[usize::from(js_safe)]
                    .get_or_init(|| render(event, &event.data, js_safe))
                    .clone(),
            ),
        }
        match &lifecycle {
            // An event of an earlier run of the key, replayed as history.
            _ if event.seq < self.opened.run_first_seq => After::More,
            Some(Lifecycle::Suspended { .. }) => After::Suspended(event.seq),
            Some(l) if l.is_terminal() => After::End,
            _ => After::More,
        }
    }

    fn is_production(&self) -> bool {
        self.opened.port.environment() == Environment::Production
    }

    fn mask(&self, message: &str) -> String {
        if self.is_production() {
            MASKED.to_owned()
        } else {
            message.to_owned()
        }
    }
}

impl futures_core::Stream for SseBody {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let span = this.span.clone();
        let _entered = span.enter();
        loop {
            match &mut this.phase {
                Phase::Opening => {
                    this.phase = Phase::Streaming;
                    return Poll::Ready(Some(Ok(this.opening_frame())));
                }
                Phase::Streaming => match this.poll_frames(cx) {
                    Poll::Ready(Some(bytes)) => return Poll::Ready(Some(Ok(bytes))),
                    Poll::Ready(None) => {}
                    Poll::Pending => return Poll::Pending,
                },
                Phase::Checking(check) => match check.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(true) => this.phase = Phase::Done,
                    Poll::Ready(false) => this.phase = Phase::Streaming,
                },
                Phase::Closing(frame) => {
                    let frame = frame.take();
                    this.phase = Phase::Done;
                    if let Some(frame) = frame {
                        return Poll::Ready(Some(Ok(frame)));
                    }
                }
                Phase::Done => return Poll::Ready(None),
            }
        }
    }
}

/// Whether a `suspended` event is the run's current state (then it ends the stream); a
/// historical one in a replay is only forwarded.
async fn is_newest_suspension(port: Port, scope: Scope, ik: IdempotencyKey, seq: Seq) -> bool {
    match port.status(&scope, &ik).await {
        Ok(status) => status.status == TaskState::Suspended && status.last_seq == seq,
        Err(_) => true,
    }
}

fn error_frame(message: &str, code: &str) -> Bytes {
    let mut frame = String::new();
    let data = serde_json::json!({ "message": message, "code": code });
    let _ = write_event(&mut frame, None, "error", &data.to_string());
    Bytes::from(frame)
}

/// One event's frame with `data` as its payload; empty (and logged) if its name could not be
/// written, which cannot happen for events the engine checked when they were emitted.
fn render(event: &StoredEvent, data: &serde_json::Value, js_safe: bool) -> Bytes {
    let mut frame = Vec::with_capacity(64 + event.name.len());
    let written = if js_safe && needs_js_safe_integers(data) {
        let mut safe = data.clone();
        sse::js_safe_integers(&mut safe);
        write_json_event(&mut frame, Some(event.seq), &event.name, &safe)
    } else {
        write_json_event(&mut frame, Some(event.seq), &event.name, data)
    };
    match written {
        Ok(()) => Bytes::from(frame),
        Err(e) => {
            tracing::error!(error = %e, seq = %event.seq, "event skipped: invalid name");
            Bytes::new()
        }
    }
}
