//! The axum SSE bridge (feature `axum`, on by default): `execute_task`, the user-context
//! extractor, the task routes, Prometheus metrics and `serve`.
//!
//! Cross-origin browsers: expose the key header with
//! `Access-Control-Expose-Headers: X-Taskflow-Idempotency-Key` (the `ready` frame carries the
//! key too, for clients that cannot read headers).

mod http_error;
mod identity;
mod metrics;
mod routes;
mod serve;
mod status_json;
pub(crate) mod stream;

pub use self::identity::{MaybeUser, ProxyTrust};
pub use self::routes::{metrics, routes};
pub use self::serve::{FORCED_EXIT_AFTER, serve, serve_until};
