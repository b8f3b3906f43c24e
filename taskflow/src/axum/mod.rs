//! The axum SSE bridge (feature `axum`, on by default): `execute_task`, the user-context
//! extractor and the proxy identity layer, the task routes, Prometheus metrics and `serve`.
//!
//! The bridge sits outside the engine and reaches it only through the engine's port
//! (`engine/port.rs`): it never reads the engine's state.
//!
//! Cross-origin browsers: expose the key header with
//! `Access-Control-Expose-Headers: X-Taskflow-Idempotency-Key` (the `ready` frame carries the
//! key too, for clients that cannot read headers).

mod body;
mod console;
mod disconnect;
mod execute;
mod http_error;
mod identity;
mod input;
mod metrics;
mod routes;
mod serve;
mod stall;
mod status_json;
mod stream;
mod stream_caps;

pub use self::console::{ConsoleAccess, console, console_with};
pub use self::disconnect::CLIENT_DISCONNECTED;
pub use self::execute::SseResponse;
pub use self::http_error::HttpError;
pub use self::identity::{ProxyIdentity, ProxyIdentityLayer, ProxyTrust};
pub use self::input::Input;
pub use self::routes::{Anonymous, metrics, routes, routes_with};
pub use self::serve::{FORCED_EXIT_AFTER, MAX_REQUEST_HEAD, serve, serve_until};
