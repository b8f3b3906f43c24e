//! A typed Rust client for the task routes (feature `client`): starts or re-attaches to a run
//! and yields its events, reconnecting with `Last-Event-ID` so that no event is missed or seen
//! twice.
//!
//! ```no_run
//! # async fn demo() -> Result<(), taskflow::client::ClientError> {
//! use taskflow::TaskEvent;
//! use taskflow::client::{Client, ClientEvent};
//! # use taskflow::prelude::*;
//! # #[task] async fn count(_c: TaskContext<NoEvents>, n: u32) -> Result<u32, TaskError> { Ok(n) }
//! let client = Client::new("http://127.0.0.1:3000/api");
//! let mut run = client.start(count, &10).await?;
//! while let Some(event) = run.next().await {
//!     match event? {
//!         ClientEvent::Event(TaskEvent::Completed { output, .. }) => println!("done: {output}"),
//!         other => println!("{other:?}"),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Reconnection follows SPEC §8: after a connection drops before the run's end, wait 2 s × 2ⁿ
//! (capped at 64 s) plus 0–20 % jitter and reconnect with the last complete event's id; give
//! up after 3 failed attempts in a row; a connection that delivered `ready` resets the count.
//! Frames larger than the payload limit + 64 KiB are refused.

mod lenient;
mod signal;
mod stream;

use std::time::Duration;

use crate::engine::TaskEvent;
use crate::ids::IdempotencyKey;
use crate::task::Task;

use self::stream::Target;
pub use self::stream::TaskStream;

/// Why the client stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an error before streaming (`{"error": {...}}`).
    #[error("HTTP {status}: {code}: {message}")]
    Http {
        /// The status code.
        status: u16,
        /// The error code (`invalid_input`, `not_found`, ...).
        code: String,
        /// The message.
        message: String,
        /// The input field at fault, for `invalid_input`.
        path: Option<String>,
    },
    /// Reconnecting failed `attempts` times in a row.
    #[error("gave up after {attempts} reconnection attempts: {last}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// A frame was larger than the limit.
    #[error("a frame is over {limit} bytes")]
    FrameTooLarge {
        /// The limit.
        limit: usize,
    },
    /// An event did not decode into the task's types.
    #[error("event {name} does not decode: {message}")]
    Decode {
        /// The event's name.
        name: String,
        /// What went wrong.
        message: String,
    },
}

/// What a run streams, typed by its task: a `ready` frame per connection, then the run's
/// events exactly as [`TaskFlow::subscribe_typed`](crate::TaskFlow::subscribe_typed) yields
/// them in-process.
#[non_exhaustive]
pub enum ClientEvent<T: Task> {
    /// The first frame of each connection.
    Ready {
        /// The run's key.
        idempotency_key: IdempotencyKey,
        /// Whether the request attached to an existing run.
        attached: bool,
    },
    /// A progress or lifecycle event of the run.
    Event(TaskEvent<T>),
}

impl<T: Task> std::fmt::Debug for ClientEvent<T>
where
    T::Events: std::fmt::Debug,
    T::Output: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ready {
                idempotency_key,
                attached,
            } => f
                .debug_struct("Ready")
                .field("idempotency_key", idempotency_key)
                .field("attached", attached)
                .finish(),
            Self::Event(e) => f.debug_tuple("Event").field(e).finish(),
        }
    }
}

/// A client of `taskflow::axum::routes`, mounted at `base` (e.g. `http://host/api`).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    headers: reqwest::header::HeaderMap,
    backoff_base: Duration,
    frame_limit: usize,
}

impl Client {
    /// A client of the routes at `base`.
    #[must_use]
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.into().trim_end_matches('/').to_owned(),
            headers: reqwest::header::HeaderMap::new(),
            backoff_base: Duration::from_secs(2),
            frame_limit: 1024 * 1024 + 64 * 1024,
        }
    }

    /// Sends `name: value` on every request (a proxy identity header, an auth header).
    ///
    /// # Panics
    /// When `name` or `value` is not a valid header.
    #[must_use]
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.insert(
            name,
            reqwest::header::HeaderValue::from_str(value).expect("a valid header value"),
        );
        self
    }

    /// The first reconnection delay (default 2 s; doubles, capped at 32×).
    #[must_use]
    pub fn backoff_base(mut self, base: Duration) -> Self {
        self.backoff_base = base;
        self
    }

    /// The server's payload limit (default 1 MiB); frames may be 64 KiB larger.
    #[must_use]
    pub fn payload_limit(mut self, bytes: usize) -> Self {
        self.frame_limit = bytes + 64 * 1024;
        self
    }

    /// Starts `task` with `input` (or attaches to its run) and streams it.
    ///
    /// # Errors
    /// [`ClientError::Http`] when the server refuses the request.
    pub async fn start<T: Task>(
        &self,
        task: T,
        input: &T::Input,
    ) -> Result<TaskStream<T>, ClientError> {
        let _ = task;
        let body = serde_json::to_vec(input).map_err(|e| ClientError::Decode {
            name: "input".into(),
            message: e.to_string(),
        })?;
        let mut stream = TaskStream::new(self.clone(), Target::Start(T::NAME, body));
        stream.connect_first().await?;
        Ok(stream)
    }

    /// Re-attaches to the run of `ik` and streams it from the start.
    ///
    /// # Errors
    /// [`ClientError::Http`] (404 for an unknown key).
    pub async fn attach<T: Task>(
        &self,
        task: T,
        ik: &IdempotencyKey,
    ) -> Result<TaskStream<T>, ClientError> {
        let _ = task;
        let mut stream = TaskStream::new(self.clone(), Target::Attach(ik.clone()));
        stream.connect_first().await?;
        Ok(stream)
    }
}
