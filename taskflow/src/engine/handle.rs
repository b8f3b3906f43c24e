//! [`TaskHandle`]: the one type for a started or attached run, typed by its task or not.

use std::marker::PhantomData;

use crate::ids::{IdempotencyKey, TaskId};

/// The task type of a [`TaskHandle`] whose task is known only by name (runs started with
/// `start_json`, or by the HTTP bridge). Such a handle works with every call that takes a key;
/// the typed calls (`wait`, `subscribe_typed`) need a handle typed by its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnyTask {}

/// A started (or attached) run, typed by its task.
pub struct TaskHandle<T = AnyTask> {
    /// The run's id.
    pub task_id: TaskId,
    /// The submission's key.
    pub idempotency_key: IdempotencyKey,
    /// `true` when the call attached to an existing run instead of creating one.
    pub attached: bool,
    _task: PhantomData<fn() -> T>,
}

impl<T> TaskHandle<T> {
    pub(crate) fn new(task_id: TaskId, idempotency_key: IdempotencyKey, attached: bool) -> Self {
        Self {
            task_id,
            idempotency_key,
            attached,
            _task: PhantomData,
        }
    }

    /// The same run, with its task type forgotten.
    #[must_use]
    pub fn untyped(self) -> TaskHandle<AnyTask> {
        self.retyped()
    }

    pub(crate) fn retyped<U>(self) -> TaskHandle<U> {
        TaskHandle::new(self.task_id, self.idempotency_key, self.attached)
    }
}

impl<T> Clone for TaskHandle<T> {
    fn clone(&self) -> Self {
        Self::new(self.task_id, self.idempotency_key.clone(), self.attached)
    }
}

impl<T> PartialEq for TaskHandle<T> {
    fn eq(&self, other: &Self) -> bool {
        self.task_id == other.task_id
            && self.idempotency_key == other.idempotency_key
            && self.attached == other.attached
    }
}

impl<T> Eq for TaskHandle<T> {}

impl<T> std::fmt::Debug for TaskHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle")
            .field("task_id", &self.task_id)
            .field("idempotency_key", &self.idempotency_key)
            .field("attached", &self.attached)
            .finish()
    }
}
