//! Child runs: a run started by another run's handler (`ctx.start_child`), owned by the same
//! identity, under a key derived from the parent run and the call's position, so a replay of
//! the parent re-attaches to the same child. The parent records each child as its step
//! `$child#n` (what its status lists and what a cancel cascades to); the child records its
//! parent, and wakes it when it ends.
//!
//! The rules: cancelling a parent cancels every child it started that has not ended (and
//! theirs, in turn); stopping, failing or completing a parent leaves its children alone (they
//! run on; a resumed parent finds them where they are).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Inner;
use super::admission::Ticket;
use super::control::Action;
use super::ik;
use super::scope::{Scope, StartOptions};
use crate::error::{ErrorRecord, StartError, StoreError};
use crate::identity::{UserContext, UserId};
use crate::ids::{IdempotencyKey, TaskId};
use crate::metrics::Metrics;
use crate::status::{ChildStatus, TaskState};
use crate::store::TaskRecord;
use crate::wait::Waiting;

/// The prefix of the steps under which a parent records its children.
pub(crate) const CHILD_STEP: &str = "$child";

/// What a run that starts a child is: the child's owner, key and parent link come from it.
pub(crate) struct Parent<'a> {
    pub(crate) id: TaskId,
    pub(crate) ik: &'a IdempotencyKey,
    pub(crate) owner: Option<&'a UserId>,
    pub(crate) user: Option<&'a UserContext>,
}

/// Set on the start of a child run: its key and its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChildOf {
    pub(crate) parent: TaskId,
    pub(crate) ik: IdempotencyKey,
}

/// How a child run ended, as its parent records it (`$childout#n`), so a replay of the
/// parent sees the same outcome even after the child's record is collected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ChildOutcome {
    /// Its output.
    Completed(serde_json::Value),
    /// Its error.
    Failed(ErrorRecord),
    /// Its cancel reason.
    Cancelled(String),
}

/// What a parent records of a child it started (`$child#n`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChildRecord {
    pub(crate) ik: IdempotencyKey,
    pub(crate) task: String,
}

impl Inner {
    /// Starts child `n` of `parent` (or attaches to it: the key is the same on every
    /// replay) and returns its key.
    pub(crate) async fn start_child(
        self: &Arc<Self>,
        parent: &Parent<'_>,
        task: &str,
        input: serde_json::Value,
        n: u32,
    ) -> Result<IdempotencyKey, StartError> {
        let scope = match parent.user {
            Some(user) => Scope::user(user),
            None => Scope::owner(parent.owner.cloned()),
        };
        let child = ChildOf {
            parent: parent.id,
            ik: ik::child_key(parent.ik, parent.id, n),
        };
        let options = StartOptions {
            child: Some(child),
            ..StartOptions::default()
        };
        let handle = self.start(&scope, task, input, &options).await?;
        Ok(handle.idempotency_key)
    }

    /// How the child run of `ik` ended, or `None` while it has not.
    pub(crate) async fn child_outcome(
        &self,
        ik: &IdempotencyKey,
    ) -> Result<Option<ChildOutcome>, StoreError> {
        let (record, _) = self.store.current_run(ik).await?;
        let Some(record) = record else {
            return Err(StoreError::Corrupt(format!(
                "the child run of key {ik} is gone before its parent saw it end"
            )));
        };
        Ok(match record.status {
            TaskState::Completed => Some(ChildOutcome::Completed(
                record.output.unwrap_or(serde_json::Value::Null),
            )),
            TaskState::Failed => Some(ChildOutcome::Failed(record.error.unwrap_or_else(|| {
                ErrorRecord {
                    message: "the child run failed".into(),
                    code: "child_failed".into(),
                    public: false,
                }
            }))),
            TaskState::Cancelled => Some(ChildOutcome::Cancelled(
                record.suspended_reason.unwrap_or_default(),
            )),
            TaskState::Created | TaskState::Running | TaskState::Suspended => None,
        })
    }

    /// Whether every child run of `iks` has ended.
    pub(crate) async fn children_ended(&self, iks: &[IdempotencyKey]) -> Result<bool, StoreError> {
        for ik in iks {
            if self.child_outcome(ik).await?.is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A run ended: if it is a child whose parent is parked waiting for children, wake the
    /// parent to look (it parks again when others are still going).
    pub(super) fn wake_parent(self: &Arc<Self>, record: &TaskRecord) {
        let Some(parent) = record.parent else {
            return;
        };
        let inner = self.clone();
        let owner = record.owner.clone();
        tokio::spawn(async move {
            match inner.store.task(parent).await {
                Ok(Some(run))
                    if run.status == TaskState::Running
                        && run.waiting == Some(Waiting::Children) =>
                {
                    Metrics::inc(&inner.metrics.runs_woken);
                    inner.admit(Ticket { id: parent, owner });
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(task_id = %parent, error = %e, "could not wake a parent run");
                }
            }
        });
    }

    /// The children `id` started, in order.
    pub(super) async fn children_of(&self, id: TaskId) -> Result<Vec<ChildRecord>, StoreError> {
        let prefix = format!("{CHILD_STEP}#");
        let steps = self.store.steps_with_prefix(id, &prefix).await?;
        let mut children: Vec<(u32, ChildRecord)> = Vec::with_capacity(steps.len());
        for (key, record) in steps {
            let child: ChildRecord = serde_json::from_value(record.value)
                .map_err(|e| StoreError::Corrupt(format!("child record {key} of run {id}: {e}")))?;
            children.push((key.index().unwrap_or(u32::MAX), child));
        }
        // Keys sort as text (`#10` before `#2`): order by the call's position.
        children.sort_by_key(|(n, _)| *n);
        Ok(children.into_iter().map(|(_, c)| c).collect())
    }

    /// The status's `children`: each child's key, task and state.
    pub(super) async fn children_status(&self, id: TaskId) -> Result<Vec<ChildStatus>, StoreError> {
        let mut out = Vec::new();
        for child in self.children_of(id).await? {
            let (record, _) = self.store.current_run(&child.ik).await?;
            out.push(ChildStatus {
                idempotency_key: child.ik,
                task: child.task,
                status: record.map(|r| r.status),
            });
        }
        Ok(out)
    }

    /// Cancels the children of a cancelled run that have not ended (and, through this, their
    /// own children).
    pub(super) fn cancel_children<'a>(
        self: &'a Arc<Self>,
        record: &'a TaskRecord,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let children = match self.children_of(record.id).await {
                Ok(children) => children,
                Err(e) => {
                    tracing::warn!(task_id = %record.id, error = %e, "could not list the children to cancel");
                    return;
                }
            };
            let scope = Scope::owner(record.owner.clone());
            for child in children {
                match self
                    .control(&scope, &child.ik, Action::Cancel, Some("parent cancelled"))
                    .await
                {
                    Ok(_) | Err(crate::ControlError::InvalidState { .. }) => {}
                    Err(e) => {
                        tracing::warn!(child = %child.ik, error = %e, "could not cancel a child run");
                    }
                }
            }
        })
    }
}
