//! Registered tasks, with their types erased to JSON in and JSON out.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::attempt::AttemptState;
use crate::context::{TaskContext, store_error};
use crate::error::{PayloadKind, TaskError};
use crate::input_error::InputProblem;
use crate::task::{Task, TaskOptions};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
type RunFn = dyn Fn(Arc<AttemptState>, serde_json::Value) -> BoxFuture<Result<serde_json::Value, TaskError>>
    + Send
    + Sync;

/// One registered task.
#[derive(Clone)]
pub(crate) struct Registered {
    pub(crate) name: &'static str,
    /// Decodes raw JSON into the input type and back, so equal inputs have equal JSON.
    pub(crate) normalize_input: fn(serde_json::Value) -> Result<serde_json::Value, InputProblem>,
    pub(crate) options: TaskOptions,
    pub(crate) run: Arc<RunFn>,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("name", &self.name)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Registered {
    pub(crate) fn of<T: Task>(task: T) -> Self {
        let run = move |state: Arc<AttemptState>, input: serde_json::Value| -> BoxFuture<_> {
            Box::pin(async move {
                let input: T::Input = serde_json::from_value(input).map_err(|e| {
                    TaskError::internal(
                        "incompatible_state",
                        format!(
                            "task `{}`: the recorded input no longer decodes: {e}",
                            T::NAME
                        ),
                    )
                })?;
                let ctx = TaskContext::<T::Events>::new(state.clone());
                let result = task.run(ctx, input).await;
                // The outcome is committed after every event the handler emitted.
                let flushed = state.flush().await.map_err(store_error);
                let output = result?;
                flushed?;
                let json = serde_json::to_value(&output)
                    .map_err(|e| TaskError::internal("invalid_output", e.to_string()))?;
                state
                    .check_payload(PayloadKind::Output, &json)
                    .map_err(|e| TaskError::internal("payload_too_large", e.to_string()))?;
                Ok(json)
            })
        };
        Self {
            name: T::NAME,
            normalize_input: normalize::<T::Input>,
            options: task.options(),
            run: Arc::new(run),
        }
    }
}

fn normalize<I: crate::task::TaskInput>(
    value: serde_json::Value,
) -> Result<serde_json::Value, InputProblem> {
    let is_array = value.is_array();
    let typed: I = crate::input_error::decode(value, is_array)?;
    serde_json::to_value(&typed).map_err(|e| InputProblem {
        path: None,
        message: e.to_string(),
    })
}

/// Task name → registration.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    tasks: HashMap<&'static str, Registered>,
    /// `name@version` of every task, made once (the registry is complete by then).
    claimable: std::sync::OnceLock<Vec<String>>,
}

impl Registry {
    pub(crate) fn insert(&mut self, task: Registered) -> Option<Registered> {
        debug_assert!(
            self.claimable.get().is_none(),
            "tasks are registered before the flow is built"
        );
        self.tasks.insert(task.name, task)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Registered> {
        self.tasks.get(name)
    }

    /// What this process can run, as the claims of a shared store take it: `name@version`
    /// of every registered task.
    pub(crate) fn claimable(&self) -> Vec<&str> {
        self.claimable
            .get_or_init(|| {
                self.tasks
                    .values()
                    .map(|t| format!("{}@{}", t.name, t.options.version))
                    .collect()
            })
            .iter()
            .map(String::as_str)
            .collect()
    }
}
