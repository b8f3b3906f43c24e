//! `serve`: axum's server wired to the flow's shutdown and the process's signals.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::engine::TaskFlow;

/// How long connections may take to finish after the drain before `serve` returns anyway.
pub const FORCED_EXIT_AFTER: Duration = Duration::from_secs(15);

/// Serves `app` until SIGINT or SIGTERM, then: the flow drains (new requests get 503, every
/// open stream receives `event: error` `server_shutting_down` and ends, running tasks stay
/// recoverable, the store closes), then axum shuts down gracefully; if connections are still
/// open 15 s later, `serve` returns anyway. Repeated signals change nothing.
///
/// Peer addresses are available to [`ProxyTrust::from_peers`](super::ProxyTrust::from_peers).
///
/// # Errors
/// When accepting connections fails.
pub async fn serve(listener: TcpListener, app: Router, flow: TaskFlow) -> std::io::Result<()> {
    serve_until(listener, app, flow, signal()).await
}

/// [`serve`] with another shutdown trigger (tests; embedding in a larger server).
///
/// # Errors
/// When accepting connections fails.
pub async fn serve_until(
    listener: TcpListener,
    app: Router,
    flow: TaskFlow,
    trigger: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (drained_tx, drained_rx) = tokio::sync::watch::channel(false);
    let drain_flow = flow.clone();
    let shutdown = async move {
        trigger.await;
        tracing::info!("shutting down: draining streams and tasks");
        if let Err(e) = drain_flow.shutdown().await {
            tracing::error!(error = %e, "closing the store failed");
        }
        drained_tx.send_replace(true);
    };
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown);
    let mut drained = drained_rx;
    let forced = async move {
        let _ = drained.wait_for(|d| *d).await;
        tokio::time::sleep(FORCED_EXIT_AFTER).await;
    };
    tokio::select! {
        result = server => result,
        () = forced => {
            tracing::warn!("connections still open {FORCED_EXIT_AFTER:?} after the drain; exiting anyway");
            Ok(())
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM (later ones coalesce into it).
async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
