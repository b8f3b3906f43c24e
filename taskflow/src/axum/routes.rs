//! `routes(flow)` and `metrics(flow)`: the HTTP API over a flow.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::http_error::HttpError;
use super::input::{body_bytes, json_body};
use super::status_json::status_json;
use super::stream;
use crate::engine::port::Port;
use crate::engine::{Action, Scope, TaskFlow};
use crate::identity::UserContext;
use crate::ids::IdempotencyKey;
use crate::settings::ExecuteTaskSettings;
use crate::sse::parse_last_event_id;
use crate::status::ListFilter;

/// The task API, to nest under a prefix (`Router::new().nest("/api", routes(flow))`); it
/// fits any router state (`Router<AppState>` included):
///
/// | route | does |
/// |---|---|
/// | `POST /tasks/{task}` | starts (or attaches to) the task with the raw JSON body as input; streams SSE |
/// | `GET /tasks/{ik}` | the status JSON of the key's run |
/// | `GET /tasks/{ik}/events` | re-attaches: SSE from `Last-Event-ID` (or `?last_event_id=`) |
/// | `POST /tasks/{ik}/stop`, `/resume`, `/cancel` | optional body `{"reason"}`; 200 with the status JSON |
/// | `POST /tasks/{ik}/signals/{name}` | sends signal `name` with the JSON body as payload (empty: `null`); durable when answered: 202 with the status JSON; with an `Idempotency-Key` header, a retry with the same key is not delivered twice |
/// | `GET /tasks[?limit=&cursor=]` | the caller's runs, newest first: `{"tasks": [...], "next_cursor"}` (100 per page, at most 1000; `next_cursor` is `null` on the last page) |
///
/// One `{key}` segment serves both task names and idempotency keys (a router cannot hold two
/// parameters at one position). The caller is the request's [`UserContext`] (set by the app's
/// auth middleware or by [`ProxyTrust::layer`](super::ProxyTrust::layer)); a request without
/// one is refused with 401 `unauthenticated` ([`routes_with`] and [`Anonymous::AsService`]
/// opt into serving it as the service identity). Errors are
/// `{"error": {"code", "message", "path"?}}`.
pub fn routes<S: Clone + Send + Sync + 'static>(flow: TaskFlow) -> Router<S> {
    routes_with(flow, Anonymous::Refuse)
}

/// What the task routes do with a request that carries no user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Anonymous {
    /// Refuse it with 401 `unauthenticated` (the default of [`routes`]).
    #[default]
    Refuse,
    /// Serve it as the service identity: it sees and controls the service's runs. An explicit
    /// opt-in for apps whose routes are not reachable by strangers (or that want exactly
    /// that, like the demo); `on_behalf_of` tasks still need a user.
    AsService,
}

/// [`routes`], choosing what a request without a user gets.
///
/// ```no_run
/// # async fn demo(flow: taskflow::TaskFlow) {
/// use taskflow::axum::{Anonymous, routes_with};
///
/// // Behind an internal network only: anonymous callers act as the service identity.
/// let api: axum::Router = routes_with(flow, Anonymous::AsService);
/// # }
/// ```
pub fn routes_with<S: Clone + Send + Sync + 'static>(
    flow: TaskFlow,
    anonymous: Anonymous,
) -> Router<S> {
    let port = flow.port();
    super::disconnect::arm_recovered(&port);
    let limit = port.payload_limit();
    Router::new()
        .route("/tasks", get(list))
        .route("/tasks/{key}", post(start).get(status))
        .route("/tasks/{key}/events", get(events))
        .route("/tasks/{key}/{action}", post(control))
        .route("/tasks/{key}/signals/{name}", post(signal))
        .fallback(|| async { HttpError::not_found() })
        // The closed code set has no 405: a wrong method is answered like an unknown route.
        .method_not_allowed_fallback(|| async { HttpError::not_found() })
        // The body limit equals the input limit; one byte more is 413 before any parsing.
        .layer(DefaultBodyLimit::max(limit))
        .with_state(Routes { port, anonymous })
}

/// The routes' state.
#[derive(Clone)]
struct Routes {
    port: Port,
    anonymous: Anonymous,
}

impl Routes {
    /// Who the caller is: the request's user, else the service identity if allowed.
    fn scope(&self, user: Option<UserContext>) -> Result<Scope, HttpError> {
        match (user, self.anonymous) {
            (Some(user), _) => Ok(Scope::user(&user)),
            (None, Anonymous::AsService) => Ok(Scope::service()),
            (None, Anonymous::Refuse) => Err(HttpError::unauthenticated(
                "sign in: the task routes need a user",
            )),
        }
    }
}

/// `GET /metrics`: the flow's counters as Prometheus text. Fits any router state.
pub fn metrics<S: Clone + Send + Sync + 'static>(flow: TaskFlow) -> Router<S> {
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

/// `Last-Event-ID` header, else the `last_event_id` query parameter (for a fresh EventSource).
/// The query is read raw, so no malformed query string can produce a rejection; only digits
/// are valid values, so no percent-decoding is needed.
pub(super) fn last_event_id(headers: &HeaderMap, query: Option<&str>) -> Option<crate::Seq> {
    match headers.get("last-event-id") {
        Some(v) => v.to_str().ok().and_then(parse_last_event_id),
        None => query?
            .split('&')
            .find_map(|pair| pair.strip_prefix("last_event_id="))
            .and_then(parse_last_event_id),
    }
}

async fn start(
    State(routes): State<Routes>,
    user: Option<UserContext>,
    Path(task): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, HttpError> {
    let scope = routes.scope(user)?;
    let port = &routes.port;
    let body = body_bytes(body)?;
    let input = json_body::<serde_json::Value>(&headers, &body, "the input as JSON")
        .map_err(|e| {
            if e.code() == "invalid_input" {
                HttpError::invalid_input(format!("the body is not JSON: {}", e.message()), None)
            } else {
                e
            }
        })?
        .unwrap_or(serde_json::Value::Null);
    let settings =
        ExecuteTaskSettings::default().last_event_id(last_event_id(&headers, query.as_deref()));
    Ok(stream::execute(port, scope, &task, input, &settings).await)
}

fn parse_key(key: &str) -> Result<IdempotencyKey, HttpError> {
    IdempotencyKey::parse(key).ok_or_else(HttpError::not_found)
}

async fn status(
    State(routes): State<Routes>,
    user: Option<UserContext>,
    Path(key): Path<String>,
) -> Result<Response, HttpError> {
    let scope = routes.scope(user)?;
    let port = &routes.port;
    let env = port.environment();
    let ik = parse_key(&key)?;
    let status = port
        .status(&scope, &ik)
        .await
        .map_err(|e| HttpError::from_control(e, env))?;
    Ok(json_response(&status_json(&status, env, true)))
}

async fn events(
    State(routes): State<Routes>,
    user: Option<UserContext>,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let scope = routes.scope(user)?;
    let port = &routes.port;
    let ik = parse_key(&key)?;
    let settings =
        ExecuteTaskSettings::default().last_event_id(last_event_id(&headers, query.as_deref()));
    Ok(stream::reattach(port, scope, ik, &settings).await)
}

/// The optional body of stop, resume and cancel (here and in the console).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReasonBody {
    pub(super) reason: Option<String>,
}

/// `POST /tasks/{ik}/stop|resume|cancel`, optional body `{"reason"}`.
async fn control(
    State(routes): State<Routes>,
    user: Option<UserContext>,
    Path((key, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, HttpError> {
    let scope = routes.scope(user)?;
    let port = &routes.port;
    let env = port.environment();
    let action = match action.as_str() {
        "stop" => Action::Stop,
        "resume" => Action::Resume,
        "cancel" => Action::Cancel,
        _ => return Err(HttpError::not_found()),
    };
    let ik = parse_key(&key)?;
    let body = body_bytes(body)?;
    let reason =
        json_body::<ReasonBody>(&headers, &body, "{\"reason\": \"...\"}")?.and_then(|b| b.reason);
    let status = port
        .control(&scope, &ik, action, reason.as_deref())
        .await
        .map_err(|e| HttpError::from_control(e, env))?;
    Ok(json_response(&status_json(&status, env, true)))
}

/// `POST /tasks/{ik}/signals/{name}`: the body (any JSON, empty for `null`) is the payload.
async fn signal(
    State(routes): State<Routes>,
    user: Option<UserContext>,
    Path((key, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, HttpError> {
    let scope = routes.scope(user)?;
    let port = &routes.port;
    let env = port.environment();
    let ik = parse_key(&key)?;
    let body = body_bytes(body)?;
    let payload = json_body::<serde_json::Value>(&headers, &body, "the signal's payload as JSON")?
        .unwrap_or(serde_json::Value::Null);
    let failed = |e| HttpError::from_control(e, env);
    let once = match headers.get("idempotency-key") {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| {
            HttpError::invalid_input(
                "the Idempotency-Key header must be visible ASCII, like a UUID".to_owned(),
                Some("Idempotency-Key".into()),
            )
        })?),
    };
    port.signal(&scope, &ik, &name, payload, once)
        .await
        .map_err(failed)?;
    let status = port.status(&scope, &ik).await.map_err(failed)?;
    let mut response = json_response(&status_json(&status, env, true));
    *response.status_mut() = axum::http::StatusCode::ACCEPTED;
    Ok(response)
}

/// Most runs one page of `GET /tasks` holds.
const MAX_PAGE: usize = 1000;
/// Runs a page holds without `?limit=`.
const DEFAULT_PAGE: usize = 100;

/// `GET /tasks[?limit=N&cursor=C]`: the caller's runs, newest first, one page at a time;
/// `next_cursor` continues after the page (`null` on the last one).
async fn list(
    State(routes): State<Routes>,
    user: Option<UserContext>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    let scope = routes.scope(user)?;
    let port = &routes.port;
    let env = port.environment();
    let (limit, cursor) = page_of(query.as_deref())?;
    let mut filter = ListFilter::all().limit(limit);
    if let Some(cursor) = cursor {
        filter = filter.before(cursor);
    }
    let runs = port
        .list(&scope, filter)
        .await
        .map_err(|e| HttpError::from_control(e, env))?;
    let next_cursor = (runs.len() == limit)
        .then(|| runs.last().map(|s| s.task_id.get().to_string()))
        .flatten();
    let items: Vec<_> = runs.iter().map(|s| status_json(s, env, true)).collect();
    Ok(json_response(
        &serde_json::json!({ "tasks": items, "next_cursor": next_cursor }),
    ))
}

/// `limit` (1..=1000, default 100) and `cursor` (a `next_cursor`) of a listing's query.
fn page_of(query: Option<&str>) -> Result<(usize, Option<crate::ids::TaskId>), HttpError> {
    let (mut limit, mut cursor) = (DEFAULT_PAGE, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        HttpError::invalid_input(
                            format!(
                                "limit: expected a whole number from 1 to {MAX_PAGE}, got `{value}`"
                            ),
                            Some("limit".into()),
                        )
                    })?;
            }
            "cursor" => {
                let id = value.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    HttpError::invalid_input(
                        format!("cursor: expected the `next_cursor` of a previous page, got `{value}`"),
                        Some("cursor".into()),
                    )
                })?;
                cursor = Some(crate::ids::TaskId(id));
            }
            // Other parameters belong to the app (cache busters and the like).
            _ => {}
        }
    }
    Ok((limit, cursor))
}
