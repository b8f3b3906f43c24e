//! [`TypedSubscription`]: a run's events decoded with its task's types, as [`TaskEvent`]s.

use std::pin::Pin;
use std::task::{Context, Poll};

use super::subscription::EventSubscription;
use crate::error::StoreError;
use crate::ids::Seq;
use crate::lifecycle::Lifecycle;
use crate::status::StoredEvent;

/// One entry of a run's log, decoded with the task's types.
#[non_exhaustive]
pub enum TaskEvent<T: crate::Task> {
    /// A progress event the handler emitted.
    Progress {
        /// Its sequence number.
        seq: Seq,
        /// The decoded event.
        event: T::Events,
    },
    /// The run was suspended (it may resume).
    Suspended {
        /// Its sequence number.
        seq: Seq,
        /// Why.
        reason: String,
    },
    /// The run finished with an output.
    Completed {
        /// Its sequence number.
        seq: Seq,
        /// The output.
        output: T::Output,
    },
    /// The run failed.
    Failed {
        /// Its sequence number.
        seq: Seq,
        /// The error.
        message: String,
        /// Its code.
        code: String,
    },
    /// The run was cancelled.
    Cancelled {
        /// Its sequence number.
        seq: Seq,
        /// Why.
        reason: String,
    },
    /// The run started a durable wait and is parked until it ends.
    Waiting {
        /// Its sequence number.
        seq: Seq,
        /// What it waits for.
        waiting: crate::Waiting,
    },
    /// A durable wait ended and the run goes on.
    WaitEnded {
        /// Its sequence number.
        seq: Seq,
        /// The kind of wait that ended.
        kind: crate::WaitKind,
    },
}

impl<T: crate::Task> std::fmt::Debug for TaskEvent<T>
where
    T::Events: std::fmt::Debug,
    T::Output: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Progress { seq, event } => f
                .debug_struct("Progress")
                .field("seq", seq)
                .field("event", event)
                .finish(),
            Self::Suspended { seq, reason } => f
                .debug_struct("Suspended")
                .field("seq", seq)
                .field("reason", reason)
                .finish(),
            Self::Completed { seq, output } => f
                .debug_struct("Completed")
                .field("seq", seq)
                .field("output", output)
                .finish(),
            Self::Failed { seq, message, code } => f
                .debug_struct("Failed")
                .field("seq", seq)
                .field("message", message)
                .field("code", code)
                .finish(),
            Self::Cancelled { seq, reason } => f
                .debug_struct("Cancelled")
                .field("seq", seq)
                .field("reason", reason)
                .finish(),
            Self::Waiting { seq, waiting } => f
                .debug_struct("Waiting")
                .field("seq", seq)
                .field("waiting", waiting)
                .finish(),
            Self::WaitEnded { seq, kind } => f
                .debug_struct("WaitEnded")
                .field("seq", seq)
                .field("kind", kind)
                .finish(),
        }
    }
}

/// Why a stored event did not decode into a [`TaskEvent`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TypedEventError {
    /// Reading the log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A progress event did not decode into the task's events type.
    #[error(transparent)]
    Event(#[from] crate::task::EventDecodeError),
    /// A lifecycle event's payload did not decode.
    #[error("event {seq} (`{name}`) does not decode: {source}")]
    Lifecycle {
        /// Its sequence number.
        seq: Seq,
        /// Its name.
        name: String,
        /// The serde error.
        source: serde_json::Error,
    },
}

/// [`EventSubscription`] with every event decoded by the task's types.
pub struct TypedSubscription<T> {
    raw: EventSubscription,
    _task: std::marker::PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for TypedSubscription<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.raw.fmt(f)
    }
}

impl<T: crate::Task> TypedSubscription<T> {
    pub(crate) fn new(raw: EventSubscription) -> Self {
        Self {
            raw,
            _task: std::marker::PhantomData,
        }
    }

    /// The next event, decoded; `None` once the run ended or the flow shut down.
    ///
    /// # Errors
    /// When reading the log fails or an event does not decode.
    pub async fn next(&mut self) -> Option<Result<TaskEvent<T>, TypedEventError>> {
        let event = match self.raw.next().await? {
            Ok(e) => e,
            Err(e) => return Some(Err(e.into())),
        };
        Some(decode::<T>(event))
    }
}

impl<T: crate::Task> futures_core::Stream for TypedSubscription<T> {
    type Item = Result<TaskEvent<T>, TypedEventError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let raw = Pin::new(&mut self.get_mut().raw);
        raw.poll_next(cx).map(|next| {
            next.map(|r| match r {
                Ok(event) => decode::<T>(event),
                Err(e) => Err(e.into()),
            })
        })
    }
}

pub(crate) fn decode<T: crate::Task>(e: StoredEvent) -> Result<TaskEvent<T>, TypedEventError> {
    use crate::task::Events as _;
    let seq = e.seq;
    let Some(lifecycle) = e.lifecycle() else {
        return Ok(TaskEvent::Progress {
            seq,
            event: T::Events::decode(&e.name, e.data)?,
        });
    };
    let lifecycle_error = |source| TypedEventError::Lifecycle {
        seq,
        name: e.name.clone(),
        source,
    };
    Ok(match lifecycle.map_err(lifecycle_error)? {
        Lifecycle::Suspended { reason } => TaskEvent::Suspended { seq, reason },
        Lifecycle::Cancelled { reason } => TaskEvent::Cancelled { seq, reason },
        Lifecycle::Waiting(waiting) => TaskEvent::Waiting { seq, waiting },
        Lifecycle::WaitEnded { kind } => TaskEvent::WaitEnded { seq, kind },
        Lifecycle::Failed { message, code, .. } => TaskEvent::Failed { seq, message, code },
        Lifecycle::Completed { output } => TaskEvent::Completed {
            seq,
            output: serde_json::from_value(output).map_err(lifecycle_error)?,
        },
    })
}
