//! The console's JSON routes. Errors are the task routes' `{"error": {...}}`; an operator sees
//! a failed run's own message also in production (the masking protects end users, and the
//! console is for the people who fix the error).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Console;
use crate::axum::http_error::HttpError;
use crate::axum::input::{body_bytes, json_body};
use crate::axum::routes::{ReasonBody, last_event_id};
use crate::axum::status_json::status_json;
use crate::axum::stream;
use crate::engine::{Environment, Scope};
use crate::engine::{MAX_PAGE, RunFilter};
use crate::identity::UserId;
use crate::ids::{IdempotencyKey, TaskId};
use crate::settings::ExecuteTaskSettings;
use crate::status::{TaskState, TaskStatus};

/// Operators read real messages: the console renders as in development.
const ENV: Environment = Environment::Development;

fn json_response(status: StatusCode, value: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn control_error(e: crate::error::ControlError) -> HttpError {
    HttpError::from_control(e, ENV)
}

/// A run as a row of the console: the status JSON plus its id, owner and failed attempts.
fn row(s: &TaskStatus) -> Value {
    let mut v = status_json(s, ENV, true);
    v["task_id"] = json!(s.task_id.get().to_string());
    v["owner"] = json!(s.owner.as_ref().map(UserId::as_str));
    v["failed_attempts"] = json!(s.failed_attempts);
    v
}

fn parse_key(key: &str) -> Result<IdempotencyKey, HttpError> {
    IdempotencyKey::parse(key).ok_or_else(HttpError::not_found)
}

fn bad(name: &str, message: String) -> HttpError {
    HttpError::invalid_input(format!("{name}: {message}"), Some(name.to_owned()))
}

/// The filter of `GET /api/runs`.
fn filter_of(query: Option<&str>) -> Result<RunFilter, HttpError> {
    let mut filter = RunFilter::default();
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if value.is_empty() {
            continue;
        }
        match &*name {
            "state" => {
                for s in value.split(',') {
                    let state = TaskState::ALL
                        .into_iter()
                        .find(|t| t.as_str() == s.trim())
                        .ok_or_else(|| {
                            bad(
                                "state",
                                format!(
                                    "`{s}` is not a state; expected created, running, suspended, completed, failed or cancelled"
                                ),
                            )
                        })?;
                    filter.states.push(state);
                }
            }
            "task" => filter.task = Some(value.into_owned()),
            "owner" if value == "-" => filter.owner = Some(None),
            "owner" => {
                let owner = UserId::new(value.as_ref())
                    .map_err(|e| bad("owner", format!("{e}; `-` is the service identity")))?;
                filter.owner = Some(Some(owner));
            }
            "key" => filter.key_prefix = Some(value.into_owned()),
            "limit" => {
                let n = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        bad(
                            "limit",
                            format!("expected a whole number from 1 to {MAX_PAGE}, got `{value}`"),
                        )
                    })?;
                filter.limit = Some(n);
            }
            "cursor" => {
                let id = value
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .map(TaskId)
                    .ok_or_else(|| {
                        bad(
                            "cursor",
                            format!("expected the `next_cursor` of a previous page, got `{value}`"),
                        )
                    })?;
                filter.before = Some(id);
            }
            other => {
                return Err(bad(
                    other,
                    "unknown parameter; expected state, task, owner, key, limit or cursor"
                        .to_owned(),
                ));
            }
        }
    }
    Ok(filter)
}

/// `GET /api/runs`: one page of every owner's runs.
pub(super) async fn runs(
    State(console): State<Console>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    let filter = filter_of(query.as_deref())?;
    let page = console.operator.list(filter).await.map_err(control_error)?;
    let runs: Vec<Value> = page.runs.iter().map(row).collect();
    let next = page.next.map(|id| id.get().to_string());
    Ok(json_response(
        StatusCode::OK,
        &json!({ "runs": runs, "next_cursor": next }),
    ))
}

/// `GET /api/counts`: runs per state.
pub(super) async fn counts(State(console): State<Console>) -> Result<Response, HttpError> {
    let counts = console.operator.counts().await.map_err(control_error)?;
    let map: serde_json::Map<String, Value> = counts
        .into_iter()
        .map(|(s, n)| (s.as_str().to_owned(), json!(n)))
        .collect();
    Ok(json_response(StatusCode::OK, &Value::Object(map)))
}

/// `GET /api/runs/{ik}`: the run in full.
pub(super) async fn run(
    State(console): State<Console>,
    Path(ik): Path<String>,
) -> Result<Response, HttpError> {
    let ik = parse_key(&ik)?;
    let detail = console.operator.run(&ik).await.map_err(control_error)?;
    let mut v = row(&detail.status);
    v["input"] = detail.input;
    v["steps"] = detail
        .steps
        .iter()
        .map(|s| {
            json!({
                "key": s.key.as_str(),
                "origin": s.origin,
                "attempt": s.attempt,
                "at": s.at.map(crate::clock::Timestamp::to_rfc3339),
                "duration_ms": s.duration_ms,
                "size": s.size,
                "site": s.site,
            })
        })
        .collect();
    v["attempts"] = detail
        .attempts
        .iter()
        .map(|a| {
            json!({
                "attempt": a.attempt,
                "code": a.code,
                "message": a.message,
                "at": a.at.map(crate::clock::Timestamp::to_rfc3339),
            })
        })
        .collect();
    crate::sse::js_safe_integers(&mut v);
    Ok(json_response(StatusCode::OK, &v))
}

/// `GET /api/runs/{ik}/steps/{key}`: one step's result.
pub(super) async fn step(
    State(console): State<Console>,
    Path((ik, key)): Path<(String, String)>,
) -> Result<Response, HttpError> {
    let ik = parse_key(&ik)?;
    let value = console
        .operator
        .step_value(&ik, &key)
        .await
        .map_err(control_error)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "key": key, "value": value }),
    ))
}

/// `GET /api/runs/{ik}/events`: its events over SSE, as an observer.
pub(super) async fn events(
    State(console): State<Console>,
    Path(ik): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let ik = parse_key(&ik)?;
    let settings =
        ExecuteTaskSettings::default().last_event_id(last_event_id(&headers, query.as_deref()));
    Ok(stream::observe(&console.port, Scope::operator(), ik, &settings).await)
}

/// `POST /api/runs/{ik}/stop|resume|cancel`.
pub(super) async fn control(
    State(console): State<Console>,
    Path((ik, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, HttpError> {
    let ik = parse_key(&ik)?;
    let body = body_bytes(body)?;
    let reason =
        json_body::<ReasonBody>(&headers, &body, "{\"reason\": \"...\"}")?.and_then(|b| b.reason);
    let op = &console.operator;
    let status = match action.as_str() {
        "stop" => op.stop(&ik, reason.as_deref()).await,
        "resume" => op.resume(&ik).await,
        "cancel" => op.cancel(&ik, reason.as_deref()).await,
        _ => return Err(HttpError::not_found()),
    }
    .map_err(control_error)?;
    Ok(json_response(StatusCode::OK, &row(&status)))
}

/// `POST /api/runs/{ik}/signals/{name}`: the body is the payload; stored once per
/// `Idempotency-Key` (a fresh key when the request has none).
pub(super) async fn signal(
    State(console): State<Console>,
    Path((ik, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, HttpError> {
    let ik = parse_key(&ik)?;
    let body = body_bytes(body)?;
    let payload =
        json_body::<Value>(&headers, &body, "the signal's payload as JSON")?.unwrap_or(Value::Null);
    let key = match headers.get("idempotency-key") {
        Some(v) => v
            .to_str()
            .map_err(|_| {
                HttpError::invalid_input(
                    "the Idempotency-Key header must be visible ASCII, like a UUID".to_owned(),
                    Some("Idempotency-Key".into()),
                )
            })?
            .to_owned(),
        None => fresh_key(),
    };
    let op = &console.operator;
    op.signal_once(&ik, &name, payload, &key)
        .await
        .map_err(control_error)?;
    let detail = op.run(&ik).await.map_err(control_error)?;
    Ok(json_response(StatusCode::ACCEPTED, &row(&detail.status)))
}

/// A sender's key for a signal sent without one.
fn fresh_key() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("console-{nanos:x}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// `GET /api/health`: the store's state, open streams, counters, commit histograms and the
/// sampled history.
pub(super) async fn health(State(console): State<Console>) -> Response {
    let flow = &console.flow;
    let metrics = flow.metrics();
    let counters: serde_json::Map<String, Value> = metrics
        .exported()
        .into_iter()
        .map(|m| (m.name.to_owned(), json!(m.value)))
        .collect();
    let h = flow.histograms();
    let open = console
        .port
        .extension::<crate::axum::disconnect::Streams>()
        .open_streams();
    let samples = console.samples.history(&console.port.downgrade());
    json_response(
        StatusCode::OK,
        &json!({
            "store": if metrics.store_failed == 1 { "failed" } else { "ok" },
            "open_streams": open,
            "counters": counters,
            "commit_micros": histogram(&h.commit_micros),
            "group_size": histogram(&h.group_size),
            "samples": samples,
            "sample_every_ms": u64::try_from(super::samples::EVERY.as_millis()).unwrap_or(u64::MAX),
        }),
    )
}

/// A histogram as the page draws it: counts per bucket (not cumulative), then those above.
fn histogram<const B: usize>(h: &crate::metrics::HistogramSnapshot<B>) -> Value {
    json!({ "bounds": &h.bounds[..], "counts": &h.counts[..], "above": h.above, "sum": h.sum })
}
