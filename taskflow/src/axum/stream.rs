//! `execute_task` and re-attach: the SSE response, its body written by taskflow's own frame
//! writer (`body.rs`).
//!
//! Order: identity (already resolved into the scope) → submit → headers → `retry:` + `ready`
//! → replay after `Last-Event-ID` → live events → terminal frame → end.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::body::{Opened, SseBody};
use super::disconnect::{StreamTicket, Streams, arm_recovered};
use super::http_error::HttpError;
use super::stream_caps::{OpenStreams, StreamSlot};
use crate::engine::Scope;
use crate::engine::port::Port;
use crate::ids::IdempotencyKey;
use crate::settings::ExecuteTaskSettings;
use crate::status::SubscribeFrom;
use crate::task::OnDisconnect;

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
        settings,
        Some(slot),
        Watch::Counts(grace),
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
    open(port, scope, ik, true, settings, None, Watch::Counts(None)).await
}

/// Streams a run's events to an observer (the operator console): like [`reattach`], but the
/// stream is not one of the run's watchers, so it neither holds a run under the disconnect
/// rule alive nor arms its timer when it ends.
pub(crate) async fn observe(
    port: &Port,
    scope: Scope,
    ik: IdempotencyKey,
    settings: &ExecuteTaskSettings,
) -> Response {
    if port.is_shutting_down() {
        return HttpError::shutting_down().into_response();
    }
    open(port, scope, ik, true, settings, None, Watch::Observes).await
}

/// Whether a stream counts as one of its run's watchers (the disconnect rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    /// It does, with this grace period (`None`: the one recorded with the run, if any).
    Counts(Option<std::time::Duration>),
    /// It only observes.
    Observes,
}

async fn open(
    port: &Port,
    scope: Scope,
    ik: IdempotencyKey,
    attached: bool,
    settings: &ExecuteTaskSettings,
    slot: Option<StreamSlot>,
    watch: Watch,
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
    // A re-attach on a shared store may follow a run another process's bridge started: the
    // rule recorded with the run applies here too.
    let ticket = match watch {
        Watch::Observes => None,
        Watch::Counts(grace) => {
            let grace = match grace {
                None if port.is_shared() => port.recorded_disconnect_grace(run.id).await,
                given => given,
            };
            port.extension::<Streams>().opened(port, run.id, grace);
            Some(StreamTicket {
                id: run.id,
                ik: ik.clone(),
                owner: run.owner.clone(),
            })
        }
    };
    let span = tracing::info_span!("bridge_stream", ik = %ik, task_id = %run.id);
    let opened = Opened {
        port: port.clone(),
        // The body only looks the run's status up (a `suspended` frame): the caller's live
        // context is not needed for that, and is not kept for the stream's lifetime.
        scope: Scope {
            user: None,
            ..scope
        },
        ik: ik.clone(),
        attached,
        run_first_seq: run.first_seq,
        keep_alive: settings.get_keep_alive(),
        js_safe: settings.get_js_safe_integers(),
    };
    let guard = StreamGuard {
        port: port.clone(),
        ticket,
        _slot: slot,
    };
    let body = SseBody::new(opened, subscription, span, guard);
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

/// Held by the body: when the client goes away (hyper drops the body), tells the engine that
/// a client left (arming the disconnect timer when it was the last one) and gives the stream's
/// place under the caps back.
pub(super) struct StreamGuard {
    port: Port,
    ticket: Option<StreamTicket>,
    _slot: StreamSlot,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.port.extension::<Streams>().closed(&self.port, ticket);
        }
    }
}
