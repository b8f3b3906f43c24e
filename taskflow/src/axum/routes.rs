//! `routes(flow)` and `metrics(flow)`: the HTTP API over a flow.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::http_error::HttpError;
use super::identity::MaybeUser;
use super::status_json::status_json;
use super::stream;
use crate::engine::{Action, Scope, TaskFlow};
use crate::ids::IdempotencyKey;
use crate::settings::ExecuteTaskSettings;
use crate::sse::parse_last_event_id;
use crate::status::ListFilter;

/// The task API, to nest under a prefix (`Router::new().nest("/api", routes(flow))`):
///
/// | route | does |
/// |---|---|
/// | `POST /tasks/{task}` | starts (or attaches to) the task with the raw JSON body as input; streams SSE |
/// | `GET /tasks/{ik}` | the status JSON of the key's run |
/// | `GET /tasks/{ik}/events` | re-attaches: SSE from `Last-Event-ID` (or `?last_event_id=`) |
/// | `POST /tasks/{ik}/stop`, `/resume`, `/cancel` | optional body `{"reason"}`; 200 with the status JSON |
/// | `GET /tasks` | the caller's runs |
///
/// One `{key}` segment serves both task names and idempotency keys (a router cannot hold two
/// parameters at one position). The caller is the proxy user when the flow trusts proxy
/// headers, else the service identity. Errors are `{"error": {"code", "message", "path"?}}`.
pub fn routes(flow: TaskFlow) -> Router {
    let limit = flow.inner.config.payload_limit;
    Router::new()
        .route("/tasks", get(list))
        .route("/tasks/{key}", post(start).get(status))
        .route("/tasks/{key}/events", get(events))
        .route("/tasks/{key}/{action}", post(control))
        .fallback(|| async { HttpError::not_found() })
        // The closed code set has no 405: a wrong method is answered like an unknown route.
        .method_not_allowed_fallback(|| async { HttpError::not_found() })
        // The body limit equals the input limit; one byte more is 413 before any parsing.
        .layer(DefaultBodyLimit::max(limit))
        .with_state(flow)
}

/// `GET /metrics`: the flow's counters as Prometheus text.
pub fn metrics(flow: TaskFlow) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(flow): State<TaskFlow>| async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    super::metrics::prometheus_text(&flow),
                )
            }),
        )
        .with_state(flow)
}

fn json_response(value: &serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn scope(user: MaybeUser) -> Scope {
    match user.0 {
        Some(u) => Scope::user(&u),
        None => Scope::service(),
    }
}

/// `Last-Event-ID` header, else the `last_event_id` query parameter (for a fresh EventSource).
/// The query is read raw, so no malformed query string can produce a rejection; only digits
/// are valid values, so no percent-decoding is needed.
fn last_event_id(headers: &HeaderMap, query: Option<&str>) -> Option<crate::Seq> {
    match headers.get("last-event-id") {
        Some(v) => v.to_str().ok().and_then(parse_last_event_id),
        None => query?
            .split('&')
            .find_map(|pair| pair.strip_prefix("last_event_id="))
            .and_then(parse_last_event_id),
    }
}

fn body_bytes(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Bytes, HttpError> {
    body.map_err(|r| {
        let status = r.status();
        if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            HttpError::new(
                status,
                "payload_too_large",
                "the request body is over the input limit",
            )
        } else {
            HttpError::invalid_input(r.body_text(), None)
        }
    })
}

fn json_content(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
}

async fn start(
    State(flow): State<TaskFlow>,
    user: MaybeUser,
    Path(task): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body_bytes(body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let input = if body.is_empty() {
        serde_json::Value::Null
    } else {
        if !json_content(&headers) {
            return HttpError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the input as JSON with Content-Type: application/json",
            )
            .into_response();
        }
        let mut de = serde_json::Deserializer::from_slice(&body);
        match serde_path_to_error::deserialize::<_, serde_json::Value>(&mut de) {
            Ok(v) => v,
            Err(e) => {
                return HttpError::invalid_input(
                    format!("the body is not JSON: {}", e.inner()),
                    None,
                )
                .into_response();
            }
        }
    };
    let settings =
        ExecuteTaskSettings::default().last_event_id(last_event_id(&headers, query.as_deref()));
    stream::execute(&flow.inner, scope(user), &task, input, &settings).await
}

fn parse_key(key: &str) -> Result<IdempotencyKey, HttpError> {
    IdempotencyKey::parse(key).ok_or_else(HttpError::not_found)
}

async fn status(
    State(flow): State<TaskFlow>,
    user: MaybeUser,
    Path(key): Path<String>,
) -> Response {
    let env = flow.inner.config.environment;
    let ik = match parse_key(&key) {
        Ok(ik) => ik,
        Err(e) => return e.into_response(),
    };
    match flow.inner.status(&scope(user), &ik).await {
        Ok(s) => json_response(&status_json(&s, env, true)),
        Err(e) => HttpError::from_control(e, env).into_response(),
    }
}

async fn events(
    State(flow): State<TaskFlow>,
    user: MaybeUser,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let ik = match parse_key(&key) {
        Ok(ik) => ik,
        Err(e) => return e.into_response(),
    };
    let settings =
        ExecuteTaskSettings::default().last_event_id(last_event_id(&headers, query.as_deref()));
    stream::reattach(&flow.inner, scope(user), ik, &settings).await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: Option<String>,
}

/// `POST /tasks/{ik}/stop|resume|cancel`, optional body `{"reason"}`.
async fn control(
    State(flow): State<TaskFlow>,
    user: MaybeUser,
    Path((key, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let env = flow.inner.config.environment;
    let action = match action.as_str() {
        "stop" => Action::Stop,
        "resume" => Action::Resume,
        "cancel" => Action::Cancel,
        _ => return HttpError::not_found().into_response(),
    };
    let ik = match parse_key(&key) {
        Ok(ik) => ik,
        Err(e) => return e.into_response(),
    };
    let body = match body_bytes(body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let reason = if body.is_empty() {
        None
    } else {
        if !json_content(&headers) {
            return HttpError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send {\"reason\": \"...\"} with Content-Type: application/json",
            )
            .into_response();
        }
        let mut de = serde_json::Deserializer::from_slice(&body);
        match serde_path_to_error::deserialize::<_, ReasonBody>(&mut de) {
            Ok(b) => b.reason,
            Err(e) => {
                let path = e.path().to_string();
                return HttpError::invalid_input(
                    e.inner().to_string(),
                    (path != ".").then_some(path),
                )
                .into_response();
            }
        }
    };
    match flow
        .inner
        .control(&scope(user), &ik, action, reason.as_deref())
        .await
    {
        Ok(s) => json_response(&status_json(&s, env, true)),
        Err(e) => HttpError::from_control(e, env).into_response(),
    }
}

async fn list(State(flow): State<TaskFlow>, user: MaybeUser) -> Response {
    let env = flow.inner.config.environment;
    match flow.inner.list(&scope(user), ListFilter::all()).await {
        Ok(runs) => {
            let items: Vec<_> = runs.iter().map(|s| status_json(s, env, true)).collect();
            json_response(&serde_json::json!({ "tasks": items }))
        }
        Err(e) => HttpError::from_control(e, env).into_response(),
    }
}
