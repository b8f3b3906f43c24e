//! `execute_task` and re-attach: the SSE response, written by taskflow's own frame writer.
//!
//! Order: identity (already resolved into the scope) → submit → headers → `retry:` + `ready`
//! → replay after `Last-Event-ID` → live events → terminal frame → end.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::disconnect::{StreamTicket, Streams, arm_recovered};
use super::http_error::{HttpError, MASKED};
use super::stream_caps::{OpenStreams, StreamSlot};
use crate::engine::port::{Port, SharedEvent};
use crate::engine::{Environment, Scope};
use crate::ids::{IdempotencyKey, Seq};
use crate::lifecycle::Lifecycle;
use crate::settings::ExecuteTaskSettings;
use crate::sse::{js_safe_integers, write_comment, write_event, write_retry};
use crate::status::{SubscribeFrom, TaskState};
use crate::task::OnDisconnect;

/// Client reconnection delay announced in the first frame.
const RETRY_MILLIS: u64 = 2000;

/// Writes buffered between the writer and a slow client before the writer waits.
const BUFFERED_FRAMES: usize = 32;

/// At most this many frames, or about this many bytes, go into one write.
const BATCH_FRAMES: usize = 256;
const BATCH_BYTES: usize = 64 * 1024;

/// Why a writer's loop ends.
enum End {
    /// A terminal (or newest `suspended`) frame was written.
    Done,
    /// The subscription ended: the run is over or the flow shuts down.
    Closed,
    /// Reading the log failed.
    Failed(crate::StoreError),
}

/// Starts (or attaches to) a run by task name and streams it.
pub(crate) async fn execute(
    port: &Port,
    scope: Scope,
    task: &str,
    input: serde_json::Value,
    settings: &ExecuteTaskSettings,
) -> Response {
    let env = port.environment();
    if port.is_shutting_down() {
        return HttpError::shutting_down().into_response();
    }
    arm_recovered(port);
    // The stream's place under the caps is taken before the run starts: a refused request
    // starts nothing.
    let slot = match OpenStreams::take(port, scope.owner.as_ref()) {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    let span = tracing::info_span!(
        "bridge",
        task,
        user = scope.owner.as_ref().map(|u| u.as_str())
    );
    // The disconnect rule: the call's choice, else the task's (suspend unless it says continue).
    let watch = settings.get_cancel_on_disconnect().unwrap_or_else(|| {
        port.task_options(task)
            .is_none_or(|o| o.on_disconnect == OnDisconnect::Suspend)
    });
    let mut options = settings.start_options().clone();
    options.disconnect_grace = watch.then(|| settings.get_disconnect_grace());
    let start = port.start(&scope, task, input, &options);
    let started = match tracing::Instrument::instrument(start, span).await {
        Ok(s) => s,
        Err(e) => return HttpError::from_start(e, env).into_response(),
    };
    // Only the request that created the run arms the rule for it.
    let grace = if started.attached {
        None
    } else {
        options.disconnect_grace
    };
    open(
        port,
        scope,
        started.idempotency_key,
        started.attached,
        grace,
        settings,
        Some(slot),
    )
    .await
}

/// Re-attaches to the run of `ik` and streams it.
pub(crate) async fn reattach(
    port: &Port,
    scope: Scope,
    ik: IdempotencyKey,
    settings: &ExecuteTaskSettings,
) -> Response {
    if port.is_shutting_down() {
        return HttpError::shutting_down().into_response();
    }
    arm_recovered(port);
    open(port, scope, ik, true, None, settings, None).await
}

async fn open(
    port: &Port,
    scope: Scope,
    ik: IdempotencyKey,
    attached: bool,
    disconnect_grace: Option<std::time::Duration>,
    settings: &ExecuteTaskSettings,
    slot: Option<StreamSlot>,
) -> Response {
    let env = port.environment();
    let run = match port.run(&scope, &ik).await {
        Ok(run) => run,
        Err(e) => return HttpError::from_control(e, env).into_response(),
    };
    let last_event_id = settings.get_last_event_id();
    // A finished run the client has fully seen: 204 stops EventSource from reconnecting.
    if run.status.is_terminal() && last_event_id.is_some_and(|k| k >= run.last_seq) {
        return StatusCode::NO_CONTENT.into_response();
    }
    let slot = match slot {
        Some(slot) => slot,
        None => match OpenStreams::take(port, scope.owner.as_ref()) {
            Ok(slot) => slot,
            Err(e) => return e.into_response(),
        },
    };
    let from = last_event_id.map_or(SubscribeFrom::Start, SubscribeFrom::After);
    let subscription = match port.subscribe(&scope, &ik, from).await {
        Ok(s) => s,
        Err(e) => return HttpError::from_control(e, env).into_response(),
    };
    port.extension::<Streams>().opened(run.id, disconnect_grace);
    let ticket = StreamTicket {
        id: run.id,
        ik: ik.clone(),
        owner: run.owner.clone(),
    };
    let (tx, rx) = mpsc::channel(BUFFERED_FRAMES);
    let writer = Writer {
        port: port.clone(),
        scope,
        ik: ik.clone(),
        attached,
        run_first_seq: run.first_seq,
        settings: settings.clone(),
        tx,
    };
    let span = tracing::info_span!("bridge_stream", ik = %ik, task_id = %run.id);
    let task = tokio::spawn(tracing::Instrument::instrument(
        writer.run(subscription),
        span,
    ));
    let body = FrameStream {
        rx,
        _guard: StreamGuard {
            port: port.clone(),
            ticket: Some(ticket),
            writer: task.abort_handle(),
            _slot: slot,
        },
    };
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Ok(v) = HeaderValue::from_str(ik.as_str()) {
        headers.insert("x-taskflow-idempotency-key", v);
    }
    response
}

/// Writes frames for one client until the run ends, the client leaves or the flow shuts down.
struct Writer {
    port: Port,
    scope: Scope,
    ik: IdempotencyKey,
    attached: bool,
    run_first_seq: Seq,
    settings: ExecuteTaskSettings,
    tx: mpsc::Sender<Bytes>,
}

impl Writer {
    async fn send(&self, frame: String) -> bool {
        self.tx.send(Bytes::from(frame)).await.is_ok()
    }

    async fn run(self, mut subscription: crate::EventSubscription) {
        let mut first = String::new();
        write_retry(&mut first, RETRY_MILLIS);
        let ready = serde_json::json!({
            "idempotency_key": self.ik.as_str(),
            "attached": self.attached,
        });
        let _ = write_event(&mut first, None, "ready", &ready.to_string());
        if !self.send(first).await {
            return;
        }
        let keep_alive = self.settings.get_keep_alive();
        loop {
            let next = tokio::time::timeout(keep_alive, subscription.next_shared()).await;
            let mut next = match next {
                Err(_) => {
                    let mut frame = String::new();
                    write_comment(&mut frame, "hb");
                    if !self.send(frame).await {
                        return;
                    }
                    continue;
                }
                Ok(next) => Poll::Ready(next),
            };
            // Everything at hand goes out in one write: a client that is behind (a replay, a
            // burst) gets many frames per socket write.
            let mut batch = String::new();
            let mut frames = 0;
            let end = loop {
                let shared = match next {
                    Poll::Pending => break None,
                    Poll::Ready(None) => break Some(End::Closed),
                    Poll::Ready(Some(Err(e))) => break Some(End::Failed(e)),
                    Poll::Ready(Some(Ok(shared))) => shared,
                };
                if self.append_frame(&mut batch, &shared).await {
                    break Some(End::Done);
                }
                frames += 1;
                if frames >= BATCH_FRAMES || batch.len() >= BATCH_BYTES {
                    break None;
                }
                next = subscription.poll_ready();
            };
            if !batch.is_empty() && !self.send(batch).await {
                return;
            }
            match end {
                None => {}
                Some(End::Done) => return,
                Some(End::Closed) => {
                    if self.port.is_shutting_down() {
                        self.error_frame("server_shutting_down", "server_shutting_down")
                            .await;
                    }
                    return;
                }
                Some(End::Failed(e)) => {
                    tracing::error!(error = %e, "reading the event log failed mid-stream");
                    let message = self.mask(&e.to_string(), false);
                    self.error_frame(&message, "internal").await;
                    return;
                }
            }
        }
    }

    /// Appends `shared`'s frame to `batch`; `true` when the event ends the stream.
    async fn append_frame(&self, batch: &mut String, shared: &SharedEvent) -> bool {
        let event = &shared.event;
        let js_safe = self.settings.get_js_safe_integers();
        let lifecycle = match event.lifecycle() {
            Some(Ok(l)) => Some(l),
            Some(Err(e)) => {
                tracing::error!(error = %e, seq = %event.seq, "lifecycle event skipped: bad payload");
                return false;
            }
            None => None,
        };
        match &lifecycle {
            // `failed` is rendered per client: its message may be masked, its flag dropped.
            Some(failed @ Lifecycle::Failed { .. }) => {
                let mut data = failed.wire_data(self.is_production());
                if js_safe {
                    js_safe_integers(&mut data);
                }
                batch.push_str(&render_data(event, &data));
            }
            // The default rendering: done once per event, shared by every subscriber.
            _ if js_safe => batch.push_str(shared.frame.get_or_init(|| render(event, true))),
            _ => batch.push_str(&render(event, false)),
        }
        match &lifecycle {
            // An event of an earlier run of the key, replayed as history.
            _ if event.seq < self.run_first_seq => false,
            Some(Lifecycle::Suspended { .. }) => self.is_newest_suspension(event.seq).await,
            Some(l) => l.is_terminal(),
            None => false,
        }
    }

    /// Whether a `suspended` event is the run's current state (then it ends the stream); a
    /// historical one in a replay is only forwarded.
    async fn is_newest_suspension(&self, seq: Seq) -> bool {
        match self.port.status(&self.scope, &self.ik).await {
            Ok(status) => status.status == TaskState::Suspended && status.last_seq == seq,
            Err(_) => true,
        }
    }

    fn is_production(&self) -> bool {
        self.port.environment() == Environment::Production
    }

    fn mask(&self, message: &str, public: bool) -> String {
        if self.is_production() && !public {
            MASKED.to_owned()
        } else {
            message.to_owned()
        }
    }

    async fn error_frame(&self, message: &str, code: &str) {
        let mut frame = String::new();
        let data = serde_json::json!({ "message": message, "code": code });
        let _ = write_event(&mut frame, None, "error", &data.to_string());
        let _ = self.send(frame).await;
    }
}

/// One event's frame; empty (and logged) if its name could not be written, which cannot happen
/// for events the engine checked when they were emitted.
fn render(event: &crate::StoredEvent, js_safe: bool) -> String {
    let mut data = event.data.clone();
    if js_safe {
        js_safe_integers(&mut data);
    }
    render_data(event, &data)
}

fn render_data(event: &crate::StoredEvent, data: &serde_json::Value) -> String {
    let mut frame = String::new();
    if let Err(e) = write_event(&mut frame, Some(event.seq), &event.name, &data.to_string()) {
        tracing::error!(error = %e, seq = %event.seq, "event skipped: invalid name");
        frame.clear();
    }
    frame
}

/// The response body: frames from the writer. Dropping it (the client went away) closes the
/// stream: see [`StreamGuard`].
struct FrameStream {
    rx: mpsc::Receiver<Bytes>,
    _guard: StreamGuard,
}

impl futures_core::Stream for FrameStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|frame| frame.map(Ok))
    }
}

/// Tells the engine that a client left (arming the disconnect timer when it was the last one)
/// and stops the writer.
struct StreamGuard {
    port: Port,
    ticket: Option<StreamTicket>,
    writer: AbortHandle,
    /// The stream's place under the caps, given back with the guard.
    _slot: StreamSlot,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.writer.abort();
        if let Some(ticket) = self.ticket.take() {
            self.port.extension::<Streams>().closed(&self.port, ticket);
        }
    }
}
