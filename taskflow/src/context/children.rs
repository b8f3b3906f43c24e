//! The context's child runs: `start_child`, `wait_child`, `join_all`. Each start is recorded
//! like a step (`$child#n`, the child's key), each ending the parent saw as `$childout#n`, so
//! a replay re-attaches to the same children and sees the same outcomes; waiting parks the
//! parent in the store until its children end.

use std::future::Future;
use std::marker::PhantomData;
use std::panic::Location;

use super::{TaskContext, stopped, store_error};
use crate::engine::attempt::Recheck;
use crate::engine::children::{CHILD_STEP, ChildOutcome, ChildRecord};
use crate::error::TaskError;
use crate::ids::{IdempotencyKey, StepKey};
use crate::store::StepRecord;
use crate::task::{Events, Task};

/// A child run started by [`TaskContext::start_child`], typed by its task: wait for it with
/// [`TaskContext::wait_child`] or [`TaskContext::join_all`].
pub struct ChildRun<T: Task> {
    ik: IdempotencyKey,
    n: u32,
    task: PhantomData<fn() -> T>,
}

impl<T: Task> ChildRun<T> {
    /// The child's idempotency key (its status, stream and controls are those of any run).
    #[must_use]
    pub fn idempotency_key(&self) -> &IdempotencyKey {
        &self.ik
    }
}

impl<T: Task> Clone for ChildRun<T> {
    fn clone(&self) -> Self {
        Self {
            ik: self.ik.clone(),
            n: self.n,
            task: PhantomData,
        }
    }
}

impl<T: Task> std::fmt::Debug for ChildRun<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildRun")
            .field("task", &T::NAME)
            .field("idempotency_key", &self.ik)
            .field("n", &self.n)
            .finish()
    }
}

impl<E: Events> TaskContext<E> {
    /// Starts `task` with `input` as a child of this run, owned by the same identity (with
    /// the parent's live user context, if it has one), and returns at once: the child runs
    /// on its own, like any run (it needs a slot, and the task must be registered). Its key
    /// is derived from this run and the call's position, so the replay after a crash
    /// re-attaches to the same child instead of starting another. The parent's status lists
    /// its children; cancelling the parent cancels those that have not ended (stopping it
    /// does not).
    ///
    /// # Errors
    /// `child_not_started` when the engine refuses the start (an unregistered task, a
    /// refused input, a full queue); `stopped`; `storage_unavailable`.
    #[track_caller]
    pub fn start_child<T: Task>(
        &self,
        task: T,
        input: T::Input,
    ) -> impl Future<Output = Result<ChildRun<T>, TaskError>> + Send + '_ {
        let _ = task;
        let site = Location::caller();
        let input = serde_json::to_value(&input)
            .map_err(|e| TaskError::internal("invalid_input", e.to_string()));
        async move {
            let input = input?;
            let n = self.state.next_call(CHILD_STEP);
            let key = StepKey::new(CHILD_STEP, n);
            if let Some(record) = self.state.recorded_step(&key) {
                let child: ChildRecord = serde_json::from_value(record.value).map_err(|e| {
                    TaskError::internal("incompatible_state", format!("child record `{key}`: {e}"))
                })?;
                if child.task != T::NAME {
                    return Err(TaskError::internal(
                        "incompatible_state",
                        format!(
                            "task `{}`: child `{key}` was started as task `{}` and this code starts `{}` there",
                            self.state.task_name(),
                            child.task,
                            T::NAME
                        ),
                    ));
                }
                return Ok(ChildRun {
                    ik: child.ik,
                    n,
                    task: PhantomData,
                });
            }
            if self.state.is_stopped() {
                return Err(stopped());
            }
            let ik = self
                .state
                .start_child(T::NAME, input, n)
                .await
                .map_err(|e| {
                    TaskError::internal(
                        "child_not_started",
                        format!(
                            "task `{}` could not start child task `{}`: {e}",
                            self.state.task_name(),
                            T::NAME
                        ),
                    )
                })?;
            let value = serde_json::to_vec(&ChildRecord {
                ik: ik.clone(),
                task: T::NAME.to_owned(),
            })
            .map_err(|e| TaskError::internal("invalid_step_result", e.to_string()))?;
            let site = format!("{}:{}:{}", site.file(), site.line(), site.column());
            let json = StepRecord::encode(&key, &value, &site)
                .map_err(|e| TaskError::internal("invalid_step_result", e.to_string()))?;
            self.state
                .commit_step(key, json)
                .await
                .map_err(store_error)?;
            Ok(ChildRun {
                ik,
                n,
                task: PhantomData,
            })
        }
    }

    /// Waits durably for `child` to end and returns its output (see
    /// [`join_all`](Self::join_all)).
    ///
    /// # Errors
    /// As [`join_all`](Self::join_all).
    #[track_caller]
    pub fn wait_child<'a, T: Task>(
        &'a self,
        child: &'a ChildRun<T>,
    ) -> impl Future<Output = Result<T::Output, TaskError>> + Send + 'a {
        let join = self.join_all(std::slice::from_ref(child));
        async move {
            let mut outputs = join.await?;
            outputs
                .pop()
                .ok_or_else(|| TaskError::internal("invalid_state", "one child, no output"))
        }
    }

    /// Waits durably for every child of `children` to end and returns their outputs in
    /// order. While one is still going the parent is parked in the store, holding no slot
    /// and no task, with `waiting: {"kind": "children"}` in its status and `waiting` /
    /// `wait_ended` on its stream; the last child to end wakes it. Each ending is recorded
    /// when the parent first sees it, so a crash after it replays the same outputs and the
    /// children do not run again.
    ///
    /// # Errors
    /// `child_failed` (permanent) when a child failed, with its code and message;
    /// `child_cancelled` (permanent) when one was cancelled; `incompatible_state` when an
    /// output does not decode; `stopped`; `storage_unavailable`.
    pub async fn join_all<T: Task>(
        &self,
        children: &[ChildRun<T>],
    ) -> Result<Vec<T::Output>, TaskError> {
        let call = self.state.next_call("$joincall");
        let parked_key = StepKey::new("$joinwait", call);
        let out_key = |child: &ChildRun<T>| StepKey::new("$childout", child.n);
        let mut outcomes: Vec<Option<ChildOutcome>> = Vec::with_capacity(children.len());
        for child in children {
            outcomes.push(match self.state.recorded_step(&out_key(child)) {
                Some(record) => Some(decode_outcome(&record)?),
                None => None,
            });
        }
        if outcomes.iter().any(Option::is_none) {
            if self.state.is_stopped() {
                return Err(stopped());
            }
            let invalid =
                |e: serde_json::Error| TaskError::internal("invalid_step_result", e.to_string());
            let mut seen = Vec::new();
            for (child, slot) in children.iter().zip(outcomes.iter_mut()) {
                if slot.is_some() {
                    continue;
                }
                if let Some(outcome) = self
                    .state
                    .child_outcome(&child.ik)
                    .await
                    .map_err(store_error)?
                {
                    let key = out_key(child);
                    let value = serde_json::to_vec(&outcome).map_err(invalid)?;
                    let json = StepRecord::encode(&key, &value, "child").map_err(invalid)?;
                    seen.push((key, json));
                    *slot = Some(outcome);
                }
            }
            let parked_before = self.state.recorded_step(&parked_key).is_some();
            if outcomes.iter().all(Option::is_some) {
                let ended = parked_before.then_some(crate::Lifecycle::WaitEnded {
                    kind: crate::WaitKind::Children,
                });
                self.state
                    .end_wait(None, seen, ended)
                    .await
                    .map_err(store_error)?;
            } else {
                // What it saw is recorded with the park; the rest wakes it when it ends.
                let start = if parked_before {
                    None
                } else {
                    let json =
                        StepRecord::encode(&parked_key, b"null", "child").map_err(invalid)?;
                    Some((parked_key, json))
                };
                if !seen.is_empty() {
                    self.state
                        .end_wait(None, seen, None)
                        .await
                        .map_err(store_error)?;
                }
                let pending: Vec<IdempotencyKey> = children
                    .iter()
                    .zip(&outcomes)
                    .filter(|(_, o)| o.is_none())
                    .map(|(c, _)| c.ik.clone())
                    .collect();
                self.state
                    .park(start, crate::Waiting::Children, Recheck::Children(&pending))
                    .await
                    .map_err(store_error)?;
                // The driver drops this attempt now; the last child to end wakes it.
                return std::future::pending().await;
            }
        }
        children
            .iter()
            .zip(outcomes)
            .map(|(child, outcome)| self.child_output::<T>(child, outcome))
            .collect()
    }

    fn child_output<T: Task>(
        &self,
        child: &ChildRun<T>,
        outcome: Option<ChildOutcome>,
    ) -> Result<T::Output, TaskError> {
        match outcome {
            Some(ChildOutcome::Completed(output)) => serde_json::from_value(output).map_err(|e| {
                TaskError::internal(
                    "incompatible_state",
                    format!(
                        "task `{}`: the output of child `{}` ({}) does not decode: {e}",
                        self.state.task_name(),
                        child.ik,
                        T::NAME
                    ),
                )
            }),
            Some(ChildOutcome::Failed(error)) => Err(TaskError::permanent(format!(
                "child run {} of task `{}` failed: {} ({})",
                child.ik,
                T::NAME,
                error.message,
                error.code
            ))
            .with_code("child_failed")),
            Some(ChildOutcome::Cancelled(reason)) => Err(TaskError::permanent(format!(
                "child run {} of task `{}` was cancelled: {reason}",
                child.ik,
                T::NAME
            ))
            .with_code("child_cancelled")),
            None => Err(TaskError::internal(
                "invalid_state",
                "a child joined before it ended",
            )),
        }
    }
}

fn decode_outcome(record: &StepRecord) -> Result<ChildOutcome, TaskError> {
    serde_json::from_value(record.value.clone()).map_err(|e| {
        TaskError::internal(
            "incompatible_state",
            format!("child outcome `{}`: {e}", record.key),
        )
    })
}
