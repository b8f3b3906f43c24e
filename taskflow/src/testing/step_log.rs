//! Which step bodies a flow ran and which it replayed, in order: what a crash test compares.

use std::sync::{Arc, Mutex, PoisonError};

use crate::context::StepOrigin;
use crate::ids::{StepKey, TaskId};

/// One `ctx.step` whose body returned a value (before its commit: a crash may lose it) or
/// whose recorded result was replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepCall {
    /// The run.
    pub task_id: TaskId,
    /// The step's key (`name#n`).
    pub key: StepKey,
    /// Whether its body ran or its recorded result was returned.
    pub origin: StepOrigin,
}

/// Records every step of a flow; give it to
/// [`TaskFlowBuilder::step_log`](crate::TaskFlowBuilder::step_log).
#[derive(Debug, Clone, Default)]
pub struct StepLog(Arc<Mutex<Vec<StepCall>>>);

impl StepLog {
    /// An empty log.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything recorded so far, in order.
    #[must_use]
    pub fn calls(&self) -> Vec<StepCall> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn record(&self, task_id: TaskId, key: &StepKey, origin: StepOrigin) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(StepCall {
                task_id,
                key: key.clone(),
                origin,
            });
    }
}
