//! The context's durable waits: `sleep`, `sleep_until`, `wait_signal`, `wait_signal_for`,
//! `next_signal`, `next_signal_for`.
//! Each records its decisions under internal `$`-keys like a step, parks the run in the store
//! while it waits, and replays as the first run decided.

use std::future::Future;
use std::panic::Location;

use serde::de::DeserializeOwned;

use super::{TaskContext, stopped, store_error};
use crate::engine::attempt::Recheck;
use crate::error::TaskError;
use crate::ids::StepKey;
use crate::names::validate_name;
use crate::signals::Signals;
use crate::store::StepRecord;
use crate::task::Events;

/// Where a signal wait looks: the stored signal name (`key`) and the name its `waiting`
/// status shows.
struct Channel {
    key: String,
    shown: String,
}

/// What a typed signal is stored as.
#[derive(serde::Deserialize)]
struct TypedSignal {
    name: String,
    payload: serde_json::Value,
}

fn timed_out() -> TaskError {
    TaskError::internal("invalid_state", "a signal wait without a timeout timed out")
}

impl<E: Events> TaskContext<E> {
    /// Sleeps durably for `duration`: the wake-up time is committed, and the run is parked
    /// in the store until then, holding no concurrency slot and no tokio task (the attempt
    /// ends here and a new one replays up to this point when it is due). After a crash or a
    /// restart it sleeps only the remainder; a stop or cancel ends the wait. The time is the
    /// flow's [`Clock`](crate::Clock). While parked, the status says `waiting: {"kind":
    /// "sleep", "until": ...}` and the stream carries `waiting` then `wait_ended`.
    ///
    /// A zero duration (or a time already past) records nothing but the call and returns.
    ///
    /// # Errors
    /// `stopped` when the attempt was fenced off; `storage_unavailable` when the store failed.
    #[track_caller]
    pub fn sleep(
        &self,
        duration: std::time::Duration,
    ) -> impl Future<Output = Result<(), TaskError>> + Send + '_ {
        self.sleep_to(move |now| now.plus(duration), Location::caller())
    }

    /// Sleeps durably until `until` by the flow's clock (see [`sleep`](Self::sleep)).
    ///
    /// # Errors
    /// As [`sleep`](Self::sleep).
    #[track_caller]
    pub fn sleep_until(
        &self,
        until: crate::Timestamp,
    ) -> impl Future<Output = Result<(), TaskError>> + Send + '_ {
        self.sleep_to(move |_| until, Location::caller())
    }

    async fn sleep_to(
        &self,
        target: impl FnOnce(crate::Timestamp) -> crate::Timestamp + Send,
        site: &'static Location<'static>,
    ) -> Result<(), TaskError> {
        // Internal keys (`$` is outside the step-name grammar): the start records the
        // wake-up time, the end that the wait is over.
        let start_key = self.state.next_step_key("$sleep");
        let end_key = self.state.next_step_key("$woke");
        if self.state.recorded_step(&end_key).is_some() {
            return Ok(());
        }
        if self.state.is_stopped() {
            return Err(stopped());
        }
        let site = format!("{}:{}:{}", site.file(), site.line(), site.column());
        let encode = |key: &StepKey, value: u64| {
            StepRecord::encode(key, value.to_string().as_bytes(), &site)
                .map_err(|e| TaskError::internal("invalid_step_result", e.to_string()))
        };
        let (until, start) = match self.state.recorded_step(&start_key) {
            Some(record) => {
                let ms = record.value.as_u64().ok_or_else(|| {
                    TaskError::internal(
                        "incompatible_state",
                        format!(
                            "task `{}`, sleep `{start_key}`: the recorded wake-up time is not a number",
                            self.state.task_name()
                        ),
                    )
                })?;
                (crate::Timestamp::from_millis(ms), None)
            }
            None => {
                let until = target(self.state.now());
                let json = encode(&start_key, until.as_millis())?;
                (until, Some((start_key, json)))
            }
        };
        if self.state.now() >= until {
            // Due: the end is recorded with the start when it never parked, and tells the
            // stream when it did.
            let ended = start.is_none().then_some(crate::Lifecycle::WaitEnded {
                kind: crate::WaitKind::Sleep,
            });
            let end = encode(&end_key, until.as_millis())?;
            return self
                .state
                .end_wait(start, vec![(end_key, end)], ended)
                .await
                .map_err(store_error);
        }
        self.state
            .park(start, crate::Waiting::Sleep { until }, Recheck::Nothing)
            .await
            .map_err(store_error)?;
        // The driver drops this attempt now; a new one replays up to here when it is due.
        std::future::pending().await
    }

    /// Waits durably for the next signal `name` sent to this run
    /// ([`TaskFlow::signal`](crate::TaskFlow::signal)) and returns its payload as `T`: the
    /// n-th delivery for a name is the n-th signal of that name, exactly once, whether it
    /// arrived before the call (it was kept) or after (the run is parked in the store until
    /// then, holding no slot and no task, with `waiting: {"kind": "signal", "name": ...}` in
    /// its status and `waiting` / `wait_ended` on its stream). Survives restarts on both
    /// sides like a step.
    ///
    /// # Errors
    /// `invalid_step_name` for a name outside the grammar; `incompatible_state` when the
    /// payload does not decode as `T`; `stopped`; `storage_unavailable`.
    #[track_caller]
    pub fn wait_signal<T: DeserializeOwned + Send + 'static>(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<T, TaskError>> + Send + '_ {
        let wait = self.signal_wait::<T>(self.untyped_channel(name), None, Location::caller());
        async move { wait.await?.ok_or_else(timed_out) }
    }

    /// Waits durably for the next signal of the task's [`#[signals]`](macro@crate::signals)
    /// enum `S` (declared with `#[task(signals = S)]`), whatever its name: signals are
    /// delivered in the order they arrived, each exactly once, kept when they arrive before
    /// the call, with the run parked in the store meanwhile (as
    /// [`wait_signal`](Self::wait_signal); `waiting: {"kind": "signal", "name": ...}` names
    /// the enum's signals joined by `|`).
    ///
    /// ```
    /// use taskflow::prelude::*;
    ///
    /// #[signals]
    /// pub enum Decision {
    ///     Decision { approve: bool, by: String },
    /// }
    ///
    /// #[task(signals = Decision)]
    /// async fn approval(ctx: TaskContext<NoEvents>, _: ()) -> Result<bool, TaskError> {
    ///     let Decision::Decision { approve, .. } = ctx.next_signal::<Decision>().await?;
    ///     Ok(approve)
    /// }
    /// ```
    ///
    /// # Errors
    /// `invalid_state` when the task does not declare `signals = S`; `incompatible_state`
    /// when a stored signal does not decode as `S`; `stopped`; `storage_unavailable`.
    #[track_caller]
    pub fn next_signal<S: Signals>(
        &self,
    ) -> impl Future<Output = Result<S, TaskError>> + Send + '_ {
        let wait = self.typed_wait::<S>(None, Location::caller());
        async move { wait.await?.ok_or_else(timed_out) }
    }

    /// [`next_signal`](Self::next_signal) for at most `timeout` (durably, as
    /// [`wait_signal_for`](Self::wait_signal_for)): `None` when it passed first.
    ///
    /// # Errors
    /// As [`next_signal`](Self::next_signal).
    #[track_caller]
    pub fn next_signal_for<S: Signals>(
        &self,
        timeout: std::time::Duration,
    ) -> impl Future<Output = Result<Option<S>, TaskError>> + Send + '_ {
        self.typed_wait::<S>(Some(timeout), Location::caller())
    }

    /// The typed wait: the task's typed signals are stored under one internal name in
    /// arrival order, each as `{"name", "payload"}`.
    fn typed_wait<S: Signals>(
        &self,
        timeout: Option<std::time::Duration>,
        site: &'static Location<'static>,
    ) -> impl Future<Output = Result<Option<S>, TaskError>> + Send + '_ {
        let channel = match self.state.signal_schema() {
            Some(schema) if schema.is::<S>() => Ok(Channel {
                key: crate::signals::TYPED_CHANNEL.to_owned(),
                shown: schema.wait_name(),
            }),
            declared => Err(TaskError::internal(
                "invalid_state",
                format!(
                    "task `{}` waits for the signals `{}` but declares {}: write #[task(signals = {})]",
                    self.state.task_name(),
                    std::any::type_name::<S>(),
                    declared.map_or_else(
                        || "none".to_owned(),
                        |d| format!("`signals = {}`", d.type_name())
                    ),
                    std::any::type_name::<S>(),
                ),
            )),
        };
        let wait = self.signal_wait::<TypedSignal>(channel, timeout, site);
        async move {
            let Some(signal) = wait.await? else {
                return Ok(None);
            };
            S::decode(&signal.name, signal.payload)
                .map(Some)
                .map_err(|e| {
                    TaskError::internal(
                        "incompatible_state",
                        format!(
                            "task `{}`: a stored signal does not decode: {e}",
                            self.state.task_name()
                        ),
                    )
                })
        }
    }

    /// The channel of `wait_signal(name)`: the name itself, for a task without typed signals.
    fn untyped_channel(&self, name: &str) -> Result<Channel, TaskError> {
        if let Some(schema) = self.state.signal_schema() {
            return Err(TaskError::internal(
                "invalid_state",
                format!(
                    "task `{}` declares `signals = {}`: its signals arrive through ctx.next_signal::<{}>(), not wait_signal(\"{}\")",
                    self.state.task_name(),
                    schema.type_name(),
                    schema.type_name(),
                    name.escape_debug()
                ),
            ));
        }
        validate_name(name)
            .map(|()| Channel {
                key: name.to_owned(),
                shown: name.to_owned(),
            })
            .map_err(|e| TaskError::internal("invalid_step_name", e.to_string()))
    }

    /// [`wait_signal`](Self::wait_signal) for at most `timeout` (by the flow's clock, durably:
    /// the deadline is committed and a restart waits only the rest): `None` when it passed
    /// first. A signal that arrives after that is kept for the next wait of its name.
    ///
    /// # Errors
    /// As [`wait_signal`](Self::wait_signal).
    #[track_caller]
    pub fn wait_signal_for<T: DeserializeOwned + Send + 'static>(
        &self,
        name: &str,
        timeout: std::time::Duration,
    ) -> impl Future<Output = Result<Option<T>, TaskError>> + Send + '_ {
        self.signal_wait::<T>(
            self.untyped_channel(name),
            Some(timeout),
            Location::caller(),
        )
    }

    /// One signal wait. Each call has its own markers (`$waiting:` when it parked, with its
    /// deadline; `$received:` when a parked wait got its signal; `$timedout:` when it gave
    /// up), so a replay decides as the first run did; the signal it delivers is the name's
    /// next undelivered one (a timed-out wait delivers none).
    async fn signal_wait<T: DeserializeOwned + Send + 'static>(
        &self,
        channel: Result<Channel, TaskError>,
        timeout: Option<std::time::Duration>,
        site: &'static Location<'static>,
    ) -> Result<Option<T>, TaskError> {
        let Channel { key: name, shown } = channel?;
        let call = self.state.next_call(&format!("$waitcall:{name}"));
        let delivered = format!("$wait:{name}");
        let n = self.state.peek_call(&delivered);
        let signal = crate::store::signal_key(&name, n);
        let start_key = StepKey::new(&format!("$waiting:{name}"), call);
        let end_key = StepKey::new(&format!("$received:{name}"), call);
        let timed_out_key = StepKey::new(&format!("$timedout:{name}"), call);
        let invalid =
            |e: serde_json::Error| TaskError::internal("invalid_step_result", e.to_string());
        let decode = |record: StepRecord| -> Result<Option<T>, TaskError> {
            serde_json::from_value(record.value).map(Some).map_err(|e| {
                TaskError::internal(
                    "incompatible_state",
                    format!(
                        "task `{}`, signal `{signal}`: the payload does not decode: {e}",
                        self.state.task_name()
                    ),
                )
            })
        };
        if self.state.recorded_step(&timed_out_key).is_some() {
            return Ok(None);
        }
        if self.state.recorded_step(&end_key).is_some()
            && let Some(record) = self.state.recorded_step(&signal)
        {
            self.state.next_call(&delivered);
            return decode(record);
        }
        if self.state.is_stopped() {
            return Err(stopped());
        }
        let site = format!("{}:{}:{}", site.file(), site.line(), site.column());
        let started = self.state.recorded_step(&start_key);
        let parked_before = started.is_some();
        let deadline = match &started {
            Some(record) => record.value.as_u64().map(crate::Timestamp::from_millis),
            None => timeout.map(|t| self.state.now().plus(t)),
        };
        let ended = || {
            parked_before.then_some(crate::Lifecycle::WaitEnded {
                kind: crate::WaitKind::Signal,
            })
        };
        if let Some(record) = self.state.fetch_step(&signal).await.map_err(store_error)? {
            self.state.next_call(&delivered);
            if parked_before {
                // The wait had begun: say on the stream that it is over.
                let end = StepRecord::encode(&end_key, b"null", &site).map_err(invalid)?;
                self.state
                    .end_wait(None, vec![(end_key, end)], ended())
                    .await
                    .map_err(store_error)?;
            }
            return decode(record);
        }
        if deadline.is_some_and(|d| self.state.now() >= d) {
            let end = StepRecord::encode(&timed_out_key, b"null", &site).map_err(invalid)?;
            self.state
                .end_wait(None, vec![(timed_out_key, end)], ended())
                .await
                .map_err(store_error)?;
            return Ok(None);
        }
        let start = if parked_before {
            None
        } else {
            let value = deadline.map_or_else(|| "null".to_owned(), |d| d.as_millis().to_string());
            let json = StepRecord::encode(&start_key, value.as_bytes(), &site).map_err(invalid)?;
            Some((start_key, json))
        };
        let waiting = crate::Waiting::Signal {
            name: shown,
            until: deadline,
        };
        self.state
            .park(start, waiting, Recheck::Step(&signal))
            .await
            .map_err(store_error)?;
        // The driver drops this attempt now; the signal (or the deadline) wakes the run.
        std::future::pending().await
    }
}
