//! [`TestContext`]: a real [`TaskContext`] for a unit test, so that the handler behind a
//! `#[task]` (through [`Task::run`]) or a helper that takes the context can be called
//! directly, with its own error returned as it is.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::context::TaskContext;
use crate::engine::TaskFlowBuilder;
use crate::error::WaitError;
use crate::status::{StoredEvent, SubscribeFrom};
use crate::task::{Events, Task, TaskOptions};
use crate::task_error::TaskError;

use super::{MatrixError, StepCall, StepLog, TempDataDir};

type Body<E> = Box<
    dyn FnOnce(TaskContext<E>) -> Pin<Box<dyn Future<Output = Result<(), TaskError>> + Send>>
        + Send,
>;

/// The body of the one call, handed to the task through the flow's state.
struct Slot<E>(Mutex<Option<Body<E>>>);

/// The task a [`TestContext`] runs: one attempt, whose body is the test's closure.
struct Call<E>(PhantomData<fn() -> E>);

impl<E> Clone for Call<E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for Call<E> {}

impl<E: Events> Task for Call<E> {
    const NAME: &'static str = "taskflow-test-call";
    type Input = ();
    type Output = ();
    type Events = E;

    fn options(&self) -> TaskOptions {
        TaskOptions::default().max_attempts(NonZeroU32::MIN)
    }

    async fn run(self, ctx: TaskContext<E>, (): ()) -> Result<(), TaskError> {
        let body = ctx
            .state::<Slot<E>>()?
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match body {
            Some(body) => body(ctx).await,
            None => Err(TaskError::permanent("the test's closure ran already")),
        }
    }
}

/// What one [`TestContext::call`] did.
#[derive(Debug)]
#[non_exhaustive]
pub struct CallReport<O> {
    /// What the closure returned, its error exactly as the handler made it.
    pub result: Result<O, TaskError>,
    /// Every event a subscriber from the start saw, lifecycle events included.
    pub events: Vec<StoredEvent>,
    /// Each `ctx.step` in order, and whether its body ran or was replayed.
    pub steps: Vec<StepCall>,
}

/// Gives a closure a real [`TaskContext<E>`]: one attempt of a run on a flow over a temporary
/// data dir, so `ctx.step`, `ctx.emit` and `ctx.state` behave as in production. Call a
/// `#[task]`'s handler through [`Task::run`], or a helper of your own that takes the context.
///
/// ```no_run
/// # use taskflow::prelude::*;
/// # #[task] async fn charge(ctx: TaskContext<NoEvents>, cents: u64) -> Result<u64, TaskError> {
/// #     ctx.step("charge", || async move { Ok::<_, TaskError>(cents) }).await }
/// # async fn demo() -> Result<(), taskflow::testing::MatrixError> {
/// use taskflow::Task as _;
/// use taskflow::testing::TestContext;
///
/// let call = TestContext::<NoEvents>::new()
///     .call(|ctx| charge.run(ctx, 1250))
///     .await?;
/// assert_eq!(call.result.ok(), Some(1250));
/// # Ok(()) }
/// ```
pub struct TestContext<E: Events> {
    configure: Box<dyn FnOnce(TaskFlowBuilder) -> TaskFlowBuilder + Send>,
    _events: PhantomData<fn() -> E>,
}

impl<E: Events> fmt::Debug for TestContext<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestContext").finish_non_exhaustive()
    }
}

impl<E: Events> Default for TestContext<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: Events> TestContext<E> {
    /// A context on a flow with nothing configured.
    #[must_use]
    pub fn new() -> Self {
        Self {
            configure: Box::new(|b| b),
            _events: PhantomData,
        }
    }

    /// Applies `f` to the flow's builder: app state (`.state(..)`), limits, a clock.
    #[must_use]
    pub fn configure(
        mut self,
        f: impl FnOnce(TaskFlowBuilder) -> TaskFlowBuilder + Send + 'static,
    ) -> Self {
        self.configure = Box::new(f);
        self
    }

    /// Runs `f` with the context, once (no retries), and reports what it returned, emitted
    /// and stepped.
    ///
    /// # Errors
    /// [`MatrixError`] when the flow does not build or the run cannot be followed; and
    /// [`MatrixError::Wait`] when `f` did not return (it panicked, or was stopped).
    pub async fn call<O, F, Fut>(self, f: F) -> Result<CallReport<O>, MatrixError>
    where
        O: Send + 'static,
        F: FnOnce(TaskContext<E>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<O, TaskError>> + Send + 'static,
    {
        let (returned, result) = oneshot::channel();
        let body: Body<E> = Box::new(move |ctx| {
            Box::pin(async move {
                let outcome = f(ctx).await;
                // The run ends as the closure did; the closure's own error goes to the test.
                let mirror = outcome.as_ref().map(|_| ()).map_err(|e| {
                    TaskError::permanent(e.message().to_owned()).with_code(e.code().to_owned())
                });
                let _ = returned.send(outcome);
                mirror
            })
        });
        let dir = TempDataDir::new();
        let log = StepLog::new();
        let flow = (self.configure)(dir.builder())
            .state(Slot(Mutex::new(Some(body))))
            .register(Call::<E>(PhantomData))
            .step_log(log.clone())
            .build()
            .await?;
        let handle = flow.start(Call::<E>(PhantomData), ()).await?;
        let mut subscription = flow
            .subscribe(&handle.idempotency_key, SubscribeFrom::Start)
            .await?;
        let mut events = Vec::new();
        while let Some(event) = subscription.next().await {
            events.push(event.map_err(|e| MatrixError::Events(e.to_string()))?);
        }
        let ended = flow.wait(&handle).await;
        flow.shutdown()
            .await
            .map_err(|e| MatrixError::Events(e.to_string()))?;
        // The run completes only after the closure returned, so a closure that did not return
        // left a failed (panicked) or stopped run behind.
        let Ok(result) = result.await else {
            return Err(MatrixError::Wait(ended.err().unwrap_or(WaitError::Closed)));
        };
        Ok(CallReport {
            result,
            events,
            steps: log.calls(),
        })
    }
}
