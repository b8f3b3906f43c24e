//! `execute_task` and `reattach` on [`TaskFlow`] (the service identity) and [`UserScope`] (one
//! user): the bridge's entry points for an app's own handlers. They answer with an
//! [`SseResponse`], which implements `IntoResponse`.

use axum::response::{IntoResponse, Response};

use super::http_error::HttpError;
use super::stream;
use crate::engine::port::Port;
use crate::engine::{Scope, TaskFlow, UserScope};
use crate::ids::IdempotencyKey;
use crate::settings::ExecuteTaskSettings;
use crate::task::Task;

/// The answer of [`TaskFlow::execute_task`] and friends: the SSE stream of a run (status 200,
/// `text/event-stream`), 204 for a finished run the client has fully seen, or a JSON error
/// (`{"error": {"code", "message"}}`) when the run could not be started or found.
#[derive(Debug)]
#[must_use = "an SseResponse does nothing until it is returned from a handler"]
pub struct SseResponse(Response);

impl SseResponse {
    /// The HTTP status it answers with.
    pub fn status(&self) -> axum::http::StatusCode {
        self.0.status()
    }
}

impl IntoResponse for SseResponse {
    fn into_response(self) -> Response {
        self.0
    }
}

async fn execute<T: Task>(
    port: &Port,
    scope: Scope,
    input: &T::Input,
    settings: &ExecuteTaskSettings,
) -> SseResponse {
    let json = match serde_json::to_value(input) {
        Ok(v) => v,
        Err(e) => {
            let e = crate::StartError::InvalidInput {
                path: None,
                message: e.to_string(),
            };
            return SseResponse(HttpError::from_start(e, port.environment()).into_response());
        }
    };
    SseResponse(stream::execute(port, scope, T::NAME, json, settings).await)
}

macro_rules! bridge_api {
    ($ty:ty, $this:ident => $port_scope:expr) => {
        impl $ty {
            /// Starts `task` (or attaches to its run, by idempotency key) and answers with its
            /// events as Server-Sent Events: headers, `retry:` and `ready`, the replay after
            /// `settings.last_event_id`, live events, the terminal frame. Errors before the
            /// headers are JSON (`{"error": {"code", "message"}}`) with the matching status.
            pub async fn execute_task<T: Task>(
                &self,
                task: T,
                input: T::Input,
                settings: ExecuteTaskSettings,
            ) -> SseResponse {
                let _ = task;
                let $this = self;
                let (port, scope) = $port_scope;
                execute::<T>(&port, scope, &input, &settings).await
            }

            /// Re-attaches to the run of `ik` as Server-Sent Events (from
            /// `settings.last_event_id`, else from the run's start).
            pub async fn reattach(
                &self,
                ik: &IdempotencyKey,
                settings: ExecuteTaskSettings,
            ) -> SseResponse {
                let $this = self;
                let (port, scope) = $port_scope;
                SseResponse(stream::reattach(&port, scope, ik.clone(), &settings).await)
            }
        }
    };
}

bridge_api!(TaskFlow, flow => (flow.port(), Scope::service()));
bridge_api!(UserScope, user => (user.flow().port(), user.scope().clone()));
