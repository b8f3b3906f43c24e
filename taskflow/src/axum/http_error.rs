//! Errors before the response headers: `{"error": {"code", "message", "path"?}}` with a closed
//! set of codes, and the mapping from the engine's errors.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::engine::Environment;
use crate::error::{ControlError, StartError, StoreError};

/// Message of every 404, whatever was not found: an unknown task, an unknown key and another
/// owner's key are indistinguishable.
const NOT_FOUND: &str = "not found";

pub(crate) use crate::lifecycle::MASKED;

/// An error answered before any response header, in the routes' shape:
/// `{"error": {"code", "message", "path"?}}` with the matching status (and `Retry-After` for
/// 429). Custom handlers return it to answer like the task routes (`Result<_, HttpError>`
/// with `?`). The codes form a closed set, so it is built only from the named constructors
/// and the engine's errors.
///
/// ```
/// use taskflow::axum::HttpError;
///
/// let e = HttpError::invalid_input("must be at most 100", Some("n".into()));
/// assert_eq!(e.code(), "invalid_input");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) path: Option<String>,
    pub(crate) retry_after: Option<u64>,
}

impl HttpError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            path: None,
            retry_after: None,
        }
    }

    /// 403 `forbidden`: the caller is known and not allowed (the operator console).
    #[must_use]
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 `not_found`, byte-identical for every unknown task, key or route.
    #[must_use]
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", NOT_FOUND)
    }

    /// 400 `invalid_input`, naming the field at `path` when there is one.
    #[must_use]
    pub fn invalid_input(message: impl Into<String>, path: Option<String>) -> Self {
        Self {
            path,
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_input", message)
        }
    }

    /// 401 `unauthenticated`.
    #[must_use]
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 503 `shutting_down`.
    #[must_use]
    pub fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down; retry shortly",
        )
    }

    /// A storage failure: 503 `storage_unavailable` when the storage failed (the I/O error of
    /// the commit that fail-stopped the store included, not only the refusals after it), 500
    /// for anything else (stored data that does not decode).
    fn storage(e: &StoreError, env: Environment) -> Self {
        match e {
            StoreError::FailStopped | StoreError::Closed | StoreError::Io(_) => {
                if let StoreError::Io(cause) = e {
                    tracing::error!(error = %cause, "storage failed; answering 503");
                }
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "storage is unavailable; retry on another instance",
                )
            }
            other => Self::internal(&other.to_string(), env),
        }
    }

    /// 500 `internal`; the message is logged and, in production, masked.
    #[must_use]
    pub fn internal(message: &str, env: Environment) -> Self {
        tracing::error!(error = message, "internal error answered with 500");
        let message = if env == Environment::Production {
            MASKED
        } else {
            message
        };
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The answer to a failed start, as the task routes give it.
    #[must_use]
    pub fn from_start(e: StartError, env: Environment) -> Self {
        match e {
            StartError::UnknownTask(_) => Self::not_found(),
            StartError::InvalidInput { path, message } => Self::invalid_input(message, path),
            StartError::PayloadTooLarge(p) => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                p.to_string(),
            ),
            StartError::RateLimited { retry_after } => Self {
                retry_after: Some(retry_after.as_secs().max(1)),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many new tasks; retry after the time in Retry-After",
                )
            },
            StartError::QueueFull { limit } => Self {
                retry_after: Some(1),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "queue_full",
                    format!("{limit} tasks are already waiting; retry shortly"),
                )
            },
            StartError::UserRequired(task) => {
                Self::unauthenticated(format!("task `{task}` runs on behalf of a user; sign in"))
            }
            StartError::ShuttingDown => Self::shutting_down(),
            StartError::Storage(s) => Self::storage(&s, env),
        }
    }

    /// The answer to a failed status, list or control call, as the task routes give it.
    #[must_use]
    pub fn from_control(e: ControlError, env: Environment) -> Self {
        match e {
            ControlError::NotFound => Self::not_found(),
            ControlError::InvalidState { state, action } => Self::new(
                StatusCode::CONFLICT,
                "invalid_state",
                format!("cannot {action} a task that is {state}"),
            ),
            e @ ControlError::ReasonTooLong { .. } => {
                Self::invalid_input(e.to_string(), Some("reason".into()))
            }
            ControlError::ShuttingDown => Self::shutting_down(),
            e @ ControlError::InvalidName(_) => {
                Self::invalid_input(e.to_string(), Some("name".into()))
            }
            ControlError::InvalidSignal { path, message } => Self::invalid_input(message, path),
            ControlError::PayloadTooLarge(e) => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                e.to_string(),
            ),
            ControlError::Storage(s) => Self::storage(&s, env),
        }
    }

    /// Sets `Retry-After` (seconds).
    pub(crate) fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The error code (one of the closed set).
    #[must_use]
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message shown to the caller.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The JSON body.
    #[must_use]
    pub fn body(&self) -> serde_json::Value {
        let mut error = serde_json::json!({ "code": self.code, "message": self.message });
        if let Some(path) = &self.path {
            error["path"] = serde_json::Value::String(path.clone());
        }
        serde_json::json!({ "error": error })
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = self.body().to_string();
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
