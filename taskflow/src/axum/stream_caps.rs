//! Caps on open SSE streams, per user and in all, so clients cannot hold unbounded memory
//! (each open stream costs a writer, a channel and a connection). Over a cap a new stream is
//! refused with 429 `rate_limited` and `Retry-After`; the service identity has only the
//! global cap, as with the other per-user limits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;

use super::http_error::HttpError;
use crate::engine::port::Port;
use crate::identity::UserId;
use crate::sync::lock;

/// Open streams of one flow, counted.
#[derive(Debug, Default)]
pub(crate) struct OpenStreams {
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_user: HashMap<UserId, usize>,
}

/// One open stream's place under the caps; given back when dropped (the client left).
#[derive(Debug)]
pub(crate) struct StreamSlot {
    streams: Arc<OpenStreams>,
    owner: Option<UserId>,
}

impl OpenStreams {
    /// Takes a place for a stream of `owner`, or refuses it over a cap.
    pub(crate) fn take(port: &Port, owner: Option<&UserId>) -> Result<StreamSlot, HttpError> {
        let streams = port.extension::<OpenStreams>();
        let (global, per_user) = port.stream_limits();
        {
            let mut counts = lock(&streams.counts);
            if counts.total >= global {
                return Err(refused(format!(
                    "{global} SSE streams are open on this server; retry shortly"
                )));
            }
            if let Some(user) = owner {
                let mine = counts.by_user.get(user).copied().unwrap_or(0);
                if mine >= per_user {
                    return Err(refused(format!(
                        "{per_user} of your SSE streams are already open; close one or retry shortly"
                    )));
                }
                *counts.by_user.entry(user.clone()).or_insert(0) += 1;
            }
            counts.total += 1;
        }
        Ok(StreamSlot {
            streams,
            owner: owner.cloned(),
        })
    }
}

fn refused(message: String) -> HttpError {
    HttpError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message).retry_after(1)
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.streams.counts);
        counts.total = counts.total.saturating_sub(1);
        if let Some(user) = &self.owner
            && let Some(n) = counts.by_user.get_mut(user)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.by_user.remove(user);
            }
        }
    }
}
