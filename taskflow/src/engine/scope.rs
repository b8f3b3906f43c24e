//! The call surface shared by [`TaskFlow`](super::TaskFlow) (service identity) and
//! [`UserScope`] (one user), generated once for both.

use std::num::NonZeroU32;
use std::sync::Arc;

use super::{Inner, TaskFlow};
use crate::identity::{UserContext, UserId};
use crate::task::ExecuteMode;

/// Who a call runs as, and the live user context it brings.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    /// The owner of what the call creates and of what it may see; `None` = service identity.
    pub(crate) owner: Option<UserId>,
    /// The caller's live context (reaches the handler; never persisted).
    pub(crate) user: Option<UserContext>,
    /// Whose runs the call may see and steer.
    pub(crate) reach: Reach,
}

/// Whose runs a call may see and steer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Only the scope owner's.
    #[default]
    Own,
    /// Every owner's (an [`Operator`](super::operator::Operator)).
    Everyone,
}

impl Scope {
    /// The service identity.
    pub(crate) fn service() -> Self {
        Self::default()
    }

    /// One user, with their live context.
    pub(crate) fn user(user: &UserContext) -> Self {
        Self {
            owner: Some(user.id().clone()),
            user: Some(user.clone()),
            reach: Reach::Own,
        }
    }

    /// One owner, without a live context (the bridge's disconnect rule acts for the owner).
    pub(crate) fn owner(owner: Option<UserId>) -> Self {
        Self {
            owner,
            user: None,
            reach: Reach::Own,
        }
    }

    /// An operator: every owner's runs (it creates none).
    pub(crate) fn operator() -> Self {
        Self {
            owner: None,
            user: None,
            reach: Reach::Everyone,
        }
    }
}

/// Per-call settings of `start_with`. Ignored when the call attaches to an existing run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct StartOptions {
    pub(crate) max_attempts: Option<NonZeroU32>,
    pub(crate) execute_mode: Option<ExecuteMode>,
    /// Set by the bridge for a run it watches with the disconnect rule.
    pub(crate) disconnect_grace: Option<std::time::Duration>,
    /// Set by `ctx.start_child`: the child's key and parent.
    pub(crate) child: Option<super::children::ChildOf>,
}

impl StartOptions {
    /// The task's own settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Overrides the task's `max_attempts` for a new run.
    pub fn max_attempts(mut self, n: NonZeroU32) -> Self {
        self.max_attempts = Some(n);
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

    /// The flow and the identity this scope's calls run as.
    fn scoped(&self) -> (&Arc<Inner>, Scope) {
        (&self.flow.inner, self.scope.clone())
    }

    /// The flow this scope belongs to.
    #[cfg(feature = "axum")]
    pub(crate) fn flow(&self) -> &TaskFlow {
        &self.flow
    }

    /// The identity this scope's calls run as.
    #[cfg(feature = "axum")]
    pub(crate) fn scope(&self) -> &Scope {
        &self.scope
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
                let (inner, scope) = self.scoped();
                let started = inner.start(&scope, T::NAME, json, &options).await?;
                Ok(started.retyped())
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
            ) -> Result<$crate::TaskHandle, $crate::StartError> {
                let (inner, scope) = self.scoped();
                inner.start(&scope, task, input, &options).await
            }

            /// The current run of `ik`.
            ///
            /// # Errors
            /// `NotFound` for an unknown key or another owner's key.
            pub async fn status(
                &self,
                ik: &$crate::IdempotencyKey,
            ) -> Result<$crate::TaskStatus, $crate::ControlError> {
                let (inner, scope) = self.scoped();
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
                let (inner, scope) = self.scoped();
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
                let (inner, scope) = self.scoped();
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
                let (inner, scope) = self.scoped();
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
                let (inner, scope) = self.scoped();
                inner
                    .control(&scope, ik, $crate::engine::Action::Resume, None)
                    .await
            }

            /// Sends signal `name` (step-name grammar; not `stop`, `resume` or `cancel`) with the
            /// JSON `payload` to the run: durable when this returns, kept in order per name,
            /// buffered until the handler's n-th
            /// [`wait_signal(name)`](crate::TaskContext::wait_signal) consumes the n-th one,
            /// and it wakes a run parked waiting for it. When the run's task declares a
            /// [`#[signals]`](macro@crate::signals) enum, `name` and `payload` must be one of
            /// its variants, and the handler receives it with
            /// [`next_signal`](crate::TaskContext::next_signal).
            ///
            /// # Errors
            /// `NotFound` (also for another owner's key); `InvalidState` on a finished run;
            /// `InvalidName`; `InvalidSignal` (not one of the task's signals);
            /// `PayloadTooLarge`; `ShuttingDown`.
            pub async fn signal(
                &self,
                ik: &$crate::IdempotencyKey,
                name: &str,
                payload: ::serde_json::Value,
            ) -> Result<(), $crate::ControlError> {
                let (inner, scope) = self.scoped();
                inner.signal(&scope, ik, name, payload, None).await
            }

            /// [`signal`](Self::signal) that may be retried: `key` (1–128 bytes of
            /// `[A-Za-z0-9_.:-]`, a UUID say) is the sender's idempotency key, and a signal
            /// with a key that already reached the run is not stored again (this returns
            /// `Ok` as the first call did). A client that does not know whether its request
            /// arrived sends it again with the same key.
            ///
            /// # Errors
            /// As [`signal`](Self::signal); `InvalidSignal` for a malformed key.
            pub async fn signal_once(
                &self,
                ik: &$crate::IdempotencyKey,
                name: &str,
                payload: ::serde_json::Value,
                key: &str,
            ) -> Result<(), $crate::ControlError> {
                let (inner, scope) = self.scoped();
                inner.signal(&scope, ik, name, payload, Some(key)).await
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
                let (inner, scope) = self.scoped();
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
                let (inner, scope) = self.scoped();
                inner.wait_json(&scope, ik).await
            }
        }
    };
}

pub(crate) use scoped_api;

scoped_api!(UserScope);
