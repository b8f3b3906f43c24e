//! The taskflow demo: durable tasks whose progress a browser watches live, across reloads,
//! disconnects and server restarts.
//!
//! ```text
//! cargo run --release --example demo        # then open the printed URL
//! ```
//!
//! Environment: `TASKFLOW_ADDR` (default `127.0.0.1:3000`; port 0 picks a free port),
//! `TASKFLOW_DATA_DIR` (default `.taskflow`), `TASKFLOW_ENV=production` masks error messages.
//! With `TASKFLOW_DATABASE_URL` (a libpq-style URL) the log lives in PostgreSQL instead, in
//! schema `TASKFLOW_PG_SCHEMA` (default `taskflow`), and several demo processes can share it;
//! `TASKFLOW_STALE_THRESHOLD_MS` (default 30000) is how long a run whose process stopped
//! renewing its lease waits before another process claims it.
//! Routes: `GET /` (the page), `GET /metrics`, the task API under `/api`
//! (`taskflow::axum::routes_with`), and the operator console under `/console` (every user's
//! runs; operator: the demo user `admin`; in a browser, sign in with `/sign-in?user=admin`,
//! which sets a demo-only cookie standing in for the proxy header; `/sign-out` leaves). Proxy identity headers (`X-Forwarded-User`, `-Email`,
//! `-Access-Token`) are trusted; without them requests run as the service identity (the demo
//! opts into anonymous access with `Anonymous::AsService`).

mod sign_in;
mod tasks;

use std::time::Duration;

use axum::http::header::CONTENT_TYPE;
use axum::response::Html;
use axum::routing::get;
use taskflow::TaskFlow;
use taskflow::axum::{Anonymous, ConsoleAccess, ProxyTrust, console_with};

/// jemalloc rather than the system allocator: each idle SSE connection holds two 8 KiB HTTP
/// buffers of which it touches a few hundred bytes, and jemalloc leaves the untouched pages
/// out of the process's RSS (about 9.5 KiB per idle connection here, against 12.8–14.9 KiB
/// with glibc's malloc; BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,taskflow=info".into()),
        )
        .init();
    let addr = std::env::var("TASKFLOW_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let flow = store(TaskFlow::builder())?
        .register(tasks::count_to_n)
        .register(tasks::pipeline_with_steps)
        .register(tasks::approval_flow)
        .stop_grace(Duration::from_secs(2))
        .build()
        .await?;
    let app = axum::Router::new()
        .route("/", get(|| async { Html(include_str!("page.html")) }))
        .route(
            "/static/taskflow-client.js",
            get(|| async {
                (
                    [(CONTENT_TYPE, "text/javascript")],
                    include_str!("static/taskflow-client.js"),
                )
            }),
        )
        .route(
            "/static/taskflow-client.d.ts",
            get(|| async {
                (
                    [(CONTENT_TYPE, "text/plain")],
                    include_str!("static/taskflow-client.d.ts"),
                )
            }),
        )
        .route(
            "/static/events.d.ts",
            get(|| async {
                (
                    [(CONTENT_TYPE, "text/plain")],
                    include_str!("static/events.d.ts"),
                )
            }),
        )
        .nest(
            "/api",
            // The demo opts into anonymous access: a request without proxy identity headers
            // acts as the service identity (an app on the internet would keep the default
            // `routes`, which answers it with 401).
            taskflow::axum::routes_with(flow.clone(), Anonymous::AsService)
                .layer(ProxyTrust::new().layer(&flow)),
        )
        // The operator console: every user's runs, for the demo user `admin` only.
        .nest(
            "/console",
            console_with(flow.clone(), ConsoleAccess::users(["admin"]))
                .layer(ProxyTrust::new().layer(&flow)),
        )
        .route(
            "/console/",
            get(|| async { axum::response::Redirect::permanent("/console") }),
        )
        .route("/sign-in", get(sign_in::sign_in))
        .route("/sign-out", get(sign_in::sign_out))
        .merge(taskflow::axum::metrics(flow.clone()))
        .layer(axum::middleware::from_fn(sign_in::layer));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    // Signals are handled from here on: a SIGTERM right after the line below drains.
    let server = taskflow::axum::serve(listener, app, flow);
    println!("taskflow demo listening on http://{local}");
    server.await?;
    Ok(())
}

/// The store the environment names: PostgreSQL when `TASKFLOW_DATABASE_URL` is set, else a
/// redb file in `TASKFLOW_DATA_DIR`.
fn store(builder: taskflow::TaskFlowBuilder) -> Result<taskflow::TaskFlowBuilder, String> {
    let Ok(url) = std::env::var("TASKFLOW_DATABASE_URL") else {
        let data_dir = std::env::var("TASKFLOW_DATA_DIR").unwrap_or_else(|_| ".taskflow".into());
        return Ok(builder.data_dir(data_dir));
    };
    let schema = std::env::var("TASKFLOW_PG_SCHEMA").unwrap_or_else(|_| "taskflow".into());
    let stale_ms = match std::env::var("TASKFLOW_STALE_THRESHOLD_MS") {
        Err(_) => 30_000,
        Ok(v) => v.parse::<u64>().ok().filter(|ms| *ms > 0).ok_or_else(|| {
            format!(
                "TASKFLOW_STALE_THRESHOLD_MS is `{v}`; expected a positive number of milliseconds"
            )
        })?,
    };
    Ok(builder.postgres(
        taskflow::store::PgConfig::new(url)
            .schema(schema)
            .stale_threshold(Duration::from_millis(stale_ms)),
    ))
}
