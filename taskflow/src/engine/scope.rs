//! The call surface shared by [`TaskFlow`](super::TaskFlow) (service identity) and
//! [`UserScope`] (one user), generated once for both.

use super::{Inner, Scope, TaskFlow};
use crate::task::ExecuteMode;
use std::sync::Arc;

/// Per-call settings of `start_with`. Ignored when the call attaches to an existing run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct StartOptions {
    pub(crate) max_attempts: Option<u32>,
    pub(crate) execute_mode: Option<ExecuteMode>,
}

impl StartOptions {
    /// The task's own settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Overrides the task's `max_attempts` (≥ 1) for a new run.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n.max(1));
        self
    }

    /// Overrides the task's `execute_mode`.
    pub fn execute_mode(mut self, mode: ExecuteMode) -> Self {
        self.execute_mode = Some(mode);
        self
    }
}

/// The same calls as [`TaskFlow`], run as one user: what they create is owned by that user,
/// they see only that user's runs, and the user's live context reaches the handler.
#[derive(Debug, Clone)]
pub struct UserScope {
    flow: TaskFlow,
    scope: Scope,
}

impl UserScope {
    pub(crate) fn new(flow: TaskFlow, scope: Scope) -> Self {
        Self { flow, scope }
    }

    pub(crate) fn scope_api(&self) -> (&Arc<Inner>, Scope) {
        (&self.flow.inner, self.scope.clone())
    }
}

macro_rules! scoped_api {
    ($ty:ty) => {
        impl $ty {
            /// Starts `task` with `input`, or attaches to the run its idempotency key already
            /// names (see the dedup table in the crate docs).
            ///
            /// # Errors
            /// [`StartError`](crate::StartError): unknown task, input too large or not
            /// serialisable, rate limit, full queue, shutdown, storage.
            pub async fn start<T: $crate::Task>(
                &self,
                task: T,
                input: T::Input,
            ) -> Result<$crate::TaskHandle<T>, $crate::StartError> {
                self.start_with(task, input, $crate::StartOptions::default())
                    .await
            }

            /// [`start`](Self::start) with per-call options.
            ///
            /// # Errors
            /// As [`start`](Self::start).
            pub async fn start_with<T: $crate::Task>(
                &self,
                task: T,
                input: T::Input,
                options: $crate::StartOptions,
            ) -> Result<$crate::TaskHandle<T>, $crate::StartError> {
                let _ = task;
                let json =
                    serde_json::to_value(&input).map_err(|e| $crate::StartError::InvalidInput {
                        path: None,
                        message: e.to_string(),
                    })?;
                let (inner, scope) = self.scope_api();
                let started = inner.start(&scope, T::NAME, json, &options).await?;
                Ok($crate::engine::handle_of(started))
            }

            /// Starts a task by name with raw JSON input (what the HTTP bridge does). The
            /// input is decoded into the task's type first, so the idempotency key does not
            /// depend on key order or omitted defaults.
            ///
            /// # Errors
            /// As [`start`](Self::start).
            pub async fn start_json(
                &self,
                task: &str,
                input: serde_json::Value,
                options: $crate::StartOptions,
            ) -> Result<($crate::TaskId, $crate::IdempotencyKey, bool), $crate::StartError> {
                let (inner, scope) = self.scope_api();
                let started = inner.start(&scope, task, input, &options).await?;
                Ok((started.id, started.ik, started.attached))
            }

            /// The current run of `ik`.
            ///
            /// # Errors
            /// `NotFound` for an unknown key or another owner's key.
            pub async fn status(
                &self,
                ik: &$crate::IdempotencyKey,
            ) -> Result<$crate::TaskStatus, $crate::ControlError> {
                let (inner, scope) = self.scope_api();
                inner.status(&scope, ik).await
            }

            /// The caller's runs, newest first (one per key: its current run).
            ///
            /// # Errors
            /// When storage fails.
            pub async fn list(
                &self,
                filter: $crate::ListFilter,
            ) -> Result<Vec<$crate::TaskStatus>, $crate::ControlError> {
                let (inner, scope) = self.scope_api();
                inner.list(&scope, filter).await
            }

            /// The key's events from `from` (replay), then live, with no gap or duplicate.
            ///
            /// # Errors
            /// `NotFound` for an unknown key or another owner's key.
            pub async fn subscribe(
                &self,
                ik: &$crate::IdempotencyKey,
                from: $crate::SubscribeFrom,
            ) -> Result<$crate::EventSubscription, $crate::ControlError> {
                let (inner, scope) = self.scope_api();
                inner.subscribe(&scope, ik, from).await
            }

            /// [`subscribe`](Self::subscribe) to a started run, with its events decoded by
            /// the task's types.
            ///
            /// # Errors
            /// `NotFound` for an unknown key or another owner's key.
            pub async fn subscribe_typed<T: $crate::Task>(
                &self,
                handle: &$crate::TaskHandle<T>,
                from: $crate::SubscribeFrom,
            ) -> Result<$crate::TypedSubscription<T>, $crate::ControlError> {
                let raw = self.subscribe(&handle.idempotency_key, from).await?;
                Ok($crate::TypedSubscription::new(raw))
            }

            /// Suspends the run: commits `suspended` at once, signals
            /// [`TaskContext::cancelled`](crate::TaskContext::cancelled), fences the attempt
            /// and drops the handler after the grace period. Idempotent on a suspended run.
            ///
            /// # Errors
            /// `NotFound`; `InvalidState` on a finished run; `ReasonTooLong` past 512
            /// characters.
            pub async fn stop(
                &self,
                ik: &$crate::IdempotencyKey,
                reason: Option<&str>,
            ) -> Result<$crate::TaskStatus, $crate::ControlError> {
                let (inner, scope) = self.scope_api();
                inner
                    .control(&scope, ik, $crate::engine::Action::Stop, reason)
                    .await
            }

            /// Resumes a suspended run: the handler runs again from the top, finished steps
            /// are replayed. Idempotent on a created or running run.
            ///
            /// # Errors
            /// `NotFound`; `InvalidState` on a finished run.
            pub async fn resume(
                &self,
                ik: &$crate::IdempotencyKey,
            ) -> Result<$crate::TaskStatus, $crate::ControlError> {
                let (inner, scope) = self.scope_api();
                inner
                    .control(&scope, ik, $crate::engine::Action::Resume, None)
                    .await
            }

            /// Cancels the run for good (terminal). Idempotent on a cancelled run.
            ///
            /// # Errors
            /// `NotFound`; `InvalidState` on a completed or failed run; `ReasonTooLong`.
            pub async fn cancel(
                &self,
                ik: &$crate::IdempotencyKey,
                reason: Option<&str>,
            ) -> Result<$crate::TaskStatus, $crate::ControlError> {
                let (inner, scope) = self.scope_api();
                inner
                    .control(&scope, ik, $crate::engine::Action::Cancel, reason)
                    .await
            }

            /// Waits for the run to finish and returns its typed output.
            ///
            /// # Errors
            /// [`WaitError`](crate::WaitError): failed, cancelled, unknown, shutdown.
            pub async fn wait<T: $crate::Task>(
                &self,
                handle: &$crate::TaskHandle<T>,
            ) -> Result<T::Output, $crate::WaitError> {
                let json = self.wait_json(&handle.idempotency_key).await?;
                serde_json::from_value(json).map_err($crate::WaitError::Decode)
            }

            /// Waits for the run of `ik` to finish and returns its output as JSON.
            ///
            /// # Errors
            /// As [`wait`](Self::wait).
            pub async fn wait_json(
                &self,
                ik: &$crate::IdempotencyKey,
            ) -> Result<serde_json::Value, $crate::WaitError> {
                let (inner, scope) = self.scope_api();
                inner.wait_json(&scope, ik).await
            }
        }
    };
}

pub(crate) use scoped_api;

/// The bridge calls, on [`TaskFlow`] and [`UserScope`] alike.
#[cfg(feature = "axum")]
macro_rules! bridge_api {
    ($ty:ty) => {
        impl $ty {
            /// Starts `task` (or attaches to its run, by idempotency key) and answers with its
            /// events as Server-Sent Events: headers, `retry:` and `ready`, the replay after
            /// `settings.last_event_id`, live events, the terminal frame. Errors before the
            /// headers are JSON (`{"error": {"code", "message"}}`) with the matching status.
            pub async fn execute_task<T: $crate::Task>(
                &self,
                task: T,
                input: T::Input,
                settings: $crate::ExecuteTaskSettings,
            ) -> ::axum::response::Response {
                let _ = task;
                let (inner, scope) = self.scope_api();
                let json = match serde_json::to_value(&input) {
                    Ok(v) => v,
                    Err(e) => {
                        let e = $crate::StartError::InvalidInput {
                            path: None,
                            message: e.to_string(),
                        };
                        return ::axum::response::IntoResponse::into_response(
                            $crate::axum::stream::start_error(e, inner),
                        );
                    }
                };
                $crate::axum::stream::execute(inner, scope, T::NAME, json, &settings).await
            }

            /// Re-attaches to the run of `ik` as Server-Sent Events (from
            /// `settings.last_event_id`, else from the run's start).
            pub async fn reattach(
                &self,
                ik: &$crate::IdempotencyKey,
                settings: $crate::ExecuteTaskSettings,
            ) -> ::axum::response::Response {
                let (inner, scope) = self.scope_api();
                $crate::axum::stream::reattach(inner, scope, ik.clone(), &settings).await
            }
        }
    };
}

#[cfg(feature = "axum")]
bridge_api!(UserScope);
#[cfg(feature = "axum")]
bridge_api!(TaskFlow);

scoped_api!(UserScope);
