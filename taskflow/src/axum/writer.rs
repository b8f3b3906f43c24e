//! The SSE writer of one client: `retry:` and `ready`, then the run's frames (many per write
//! when the client is behind), keep-alives, and the terminal or error frame.

use crate::error::StoreError;
use std::task::Poll;

use axum::body::Bytes;
use tokio::sync::mpsc;

use super::http_error::MASKED;
use crate::engine::port::{Port, SharedEvent};
use crate::engine::{Environment, Scope};
use crate::ids::{IdempotencyKey, Seq};
use crate::lifecycle::Lifecycle;
use crate::settings::ExecuteTaskSettings;
use crate::sse::{js_safe_integers, write_comment, write_event, write_retry};
use crate::status::TaskState;

/// Client reconnection delay announced in the first frame.
const RETRY_MILLIS: u64 = 2000;

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

/// Writes frames for one client until the run ends, the client leaves or the flow shuts down.
pub(super) struct Writer {
    pub(super) port: Port,
    pub(super) scope: Scope,
    pub(super) ik: IdempotencyKey,
    pub(super) attached: bool,
    pub(super) run_first_seq: Seq,
    pub(super) settings: ExecuteTaskSettings,
    pub(super) tx: mpsc::Sender<Bytes>,
}

impl Writer {
    /// Hands a frame to the connection; `false` when the client is gone, or has read nothing
    /// for the stall timeout while frames waited (then its stream is dropped).
    async fn send(&self, frame: String) -> bool {
        let stalled_after = self.port.stalled_stream_after();
        match tokio::time::timeout(stalled_after, self.tx.send(Bytes::from(frame))).await {
            Ok(sent) => sent.is_ok(),
            Err(_) => {
                tracing::info!(ik = %self.ik, ?stalled_after, "the client read nothing for the stall timeout; dropping its stream");
                false
            }
        }
    }

    pub(super) async fn run(self, mut subscription: crate::EventSubscription) {
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
                    // The codes of the HTTP errors: the storage failed, or (data that does not
                    // decode) something else did.
                    let code = match e {
                        StoreError::Io(_) | StoreError::FailStopped | StoreError::Closed => {
                            "storage_unavailable"
                        }
                        _ => "internal",
                    };
                    let message = self.mask(&e.to_string(), false);
                    self.error_frame(&message, code).await;
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
