//! The operator console: one page and the JSON it reads, over every owner's runs.
//!
//! `console_with(flow, access)` is a router to nest (`.nest("/console", ...)`). The page is
//! plain HTML and one ES module, served from here (no build step, nothing from a CDN). It
//! polls: the run table and the counts by state every 2 s, the health every 2 s; an open
//! run's events come live over SSE (`/api/runs/{ik}/events`, which does not count as a
//! watcher for the run's disconnect rule).
//!
//! | route | does |
//! |---|---|
//! | `GET /` | the page |
//! | `GET /console.js` | its module |
//! | `GET /api/runs?state=&task=&owner=&key=&limit=&cursor=` | a page of every owner's runs, newest first: `{"runs": [...], "next_cursor"}`; `state` may list several (`running,suspended`), `owner=-` is the service identity, `key` is a key prefix |
//! | `GET /api/counts` | runs per state: `{"created": n, ...}` |
//! | `GET /api/runs/{ik}` | the run in full: status, input, steps (origin, attempt, start, duration, size), children, waits |
//! | `GET /api/runs/{ik}/steps/{key}` | one step's result |
//! | `GET /api/runs/{ik}/events` | its events (SSE, `Last-Event-ID` resumes) |
//! | `POST /api/runs/{ik}/stop`, `/resume`, `/cancel` | body `{"reason"}` optional; the status JSON |
//! | `POST /api/runs/{ik}/signals/{name}` | the body is the payload; `Idempotency-Key` header as on the task routes; 202 |
//! | `GET /api/health` | store state, open streams, counters, commit histograms, the last ten minutes of samples |
//!
//! Every route, the page and unknown paths included, answers 403 `forbidden` unless the
//! request passes the [`ConsoleAccess`] rule.

mod access;
mod api;
mod samples;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

pub use self::access::ConsoleAccess;
use self::samples::Samples;
use super::http_error::HttpError;
use crate::engine::TaskFlow;
use crate::engine::port::Port;
use crate::identity::UserContext;

/// The console router with no access rule: every request is 403. Use [`console_with`] to
/// open it to your operators.
pub fn console<S: Clone + Send + Sync + 'static>(flow: TaskFlow) -> Router<S> {
    console_with(flow, ConsoleAccess::nobody())
}

/// The console router, open to the requests `access` allows (others get 403 on every route).
///
/// ```no_run
/// # async fn demo(flow: taskflow::TaskFlow) {
/// use taskflow::axum::{ConsoleAccess, console_with};
///
/// let app: axum::Router = axum::Router::new()
///     .nest("/console", console_with(flow, ConsoleAccess::users(["admin"])));
/// # }
/// ```
pub fn console_with<S: Clone + Send + Sync + 'static>(
    flow: TaskFlow,
    access: ConsoleAccess,
) -> Router<S> {
    let port = flow.port();
    let limit = port.payload_limit();
    let state = Console {
        operator: flow.operator(),
        flow,
        port,
        access,
        samples: Arc::default(),
    };
    Router::new()
        .route("/", get(page))
        .route("/console.js", get(module))
        .route("/api/runs", get(api::runs))
        .route("/api/counts", get(api::counts))
        .route("/api/health", get(api::health))
        .route("/api/runs/{ik}", get(api::run))
        .route("/api/runs/{ik}/events", get(api::events))
        .route("/api/runs/{ik}/steps/{key}", get(api::step))
        .route("/api/runs/{ik}/{action}", post(api::control))
        .route("/api/runs/{ik}/signals/{name}", post(api::signal))
        .fallback(|| async { HttpError::not_found() })
        .method_not_allowed_fallback(|| async { HttpError::not_found() })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// The console's state.
#[derive(Clone)]
pub(crate) struct Console {
    flow: TaskFlow,
    operator: crate::engine::Operator,
    port: Port,
    access: ConsoleAccess,
    samples: Arc<Samples>,
}

/// Refuses, before any route, a request the access rule does not allow.
async fn guard(State(console): State<Console>, request: Request, next: Next) -> Response {
    let user = request.extensions().get::<UserContext>();
    if console.access.allows(user, request.headers()) {
        return next.run(request).await;
    }
    let who = user.map_or_else(
        || "this request has no user".to_owned(),
        |u| format!("user `{}` is not an operator", u.id()),
    );
    HttpError::forbidden(format!(
        "the operator console is closed to this caller ({who}); the app grants access with \
         ConsoleAccess"
    ))
    .into_response()
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

async fn module() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("console.js"),
    )
        .into_response()
}
