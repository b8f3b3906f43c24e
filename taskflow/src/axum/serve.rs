//! `serve`: an HTTP/1.1 server for the app (hyper's, configured against hostile clients),
//! wired to the flow's shutdown and the process's signals.
//!
//! It is axum's `serve` with what a public endpoint needs and axum does not expose: a request
//! head larger than [`MAX_REQUEST_HEAD`] is answered 431; a head that has not arrived within
//! the flow's header timeout (slowloris, or a connection that never sends) is closed; a
//! connection whose writes have waited longer than the flow's stall timeout (a client that
//! stopped reading) is closed; Nagle is off, since SSE frames are small and the bridge
//! already batches them.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower_service::Service;

use super::stall::Watched;
use crate::engine::TaskFlow;

/// The largest request head (request line and headers) `serve` reads; a larger one is
/// answered 431. Room for a 16 KiB access token, a 64 KiB `Last-Event-ID` (read as "from the
/// start") and the usual headers.
pub const MAX_REQUEST_HEAD: usize = 128 * 1024;

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
/// The signal handlers are installed when `serve` is called, before the returned future is
/// first polled: a signal that arrives right after (say, once the app printed its address)
/// starts the drain instead of killing the process.
pub fn serve(
    listener: TcpListener,
    app: Router,
    flow: TaskFlow,
) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
    serve_until(listener, app, flow, signal())
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
    let header_timeout = flow.port().header_read_timeout();
    let stall_after = flow.port().stalled_stream_after();
    let mut make = app.into_make_service_with_connect_info::<SocketAddr>();
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: the listener itself is fine.
                Err(e) if is_transient(&e) => {
                    tracing::warn!(error = %e, "accepting a connection failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(e),
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot turn Nagle off for a connection");
        }
        // The make service's error type is `Infallible`.
        let service = match make.call(peer).await {
            Ok(service) => service,
            Err(never) => match never {},
        };
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_header_size(MAX_REQUEST_HEAD);
        let stream = Watched::new(stream, stall_after, peer);
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        // Boxed before the task takes it: awaiting it inside the task would move it into a
        // second slot of the task's state, and an idle connection would carry both.
        let connection = Box::pin(graceful.watch(connection));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let mut drained = drained_rx;
    let _ = drained.wait_for(|d| *d).await;
    tokio::select! {
        () = graceful.shutdown() => Ok(()),
        () = tokio::time::sleep(FORCED_EXIT_AFTER) => {
            tracing::warn!("connections still open {FORCED_EXIT_AFTER:?} after the drain; exiting anyway");
            Ok(())
        }
    }
}

/// Accept errors that concern one connection or a passing shortage, not the listener.
fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    ) || e
        .raw_os_error()
        .is_some_and(|code| code == 24 || code == 23) // EMFILE, ENFILE
}

/// The next delivery of `signal`; never, when it could not be listened for.
#[cfg(unix)]
async fn next(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Listens for SIGINT and SIGTERM from the moment it is called (tokio installs the handlers
/// now, not at the first poll); the future resolves on the first (later ones coalesce into it).
fn signal() -> impl std::future::Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &'static str| {
            signal(kind)
                .map_err(|e| tracing::error!(error = %e, "cannot listen for {name}"))
                .ok()
        };
        let mut term = listen(SignalKind::terminate(), "SIGTERM");
        let mut int = listen(SignalKind::interrupt(), "SIGINT");
        async move {
            tokio::select! {
                _ = next(term.as_mut()) => {}
                _ = next(int.as_mut()) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
