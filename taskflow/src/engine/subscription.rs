//! [`EventSubscription`]: a run's log from a position, then live events, with no gap.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::broadcast::error::RecvError;

use crate::error::StoreError;
use crate::ids::{IdempotencyKey, Seq};
use crate::status::StoredEvent;
use crate::store::DynStore;

use super::hub::{Live, SharedEvent, Woken};

/// Events read from the log per store round trip (as many as the SSE body puts in one write).
const CHUNK: usize = 512;

/// An ordered stream of one key's events: first what the log holds after the start position,
/// then live events as they commit. Ends after the current run's terminal event
/// (`completed`, `failed`, `cancelled`) or when the flow shuts down.
///
/// Read it with [`next`](Self::next) or as a [`futures_core::Stream`]. Dropping a pending
/// `next()` loses nothing: the read goes on at the next call.
///
/// Live events come from an in-memory broadcast; a subscriber that falls behind it is not
/// dropped but reads the missing range back from the log.
pub struct EventSubscription {
    ik: IdempotencyKey,
    /// The seq of the last event returned (or the start position).
    cursor: Seq,
    state: State,
}

type Next = Option<Result<Arc<SharedEvent>, StoreError>>;

/// Where the reader is: ready for the next read, in the middle of one, or finished.
enum State {
    Idle(Box<Reader>),
    Reading(Pin<Box<dyn Future<Output = (Box<Reader>, Next)> + Send>>),
    Done,
}

impl std::fmt::Debug for EventSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSubscription")
            .field("ik", &self.ik)
            .field("cursor", &self.cursor)
            .field("done", &matches!(self.state, State::Done))
            .finish_non_exhaustive()
    }
}

impl EventSubscription {
    pub(crate) fn new(
        store: DynStore,
        ik: IdempotencyKey,
        live: Live,
        after: Seq,
        run_first_seq: Seq,
    ) -> Self {
        let reader = Reader {
            store,
            ik: ik.clone(),
            live,
            cursor: after,
            run_first_seq,
            buffer: VecDeque::new(),
            catching_up: true,
            done: false,
        };
        Self {
            ik,
            cursor: after,
            state: State::Idle(Box::new(reader)),
        }
    }

    /// The seq of the last event returned (or the start position).
    #[must_use]
    pub fn cursor(&self) -> Seq {
        self.cursor
    }

    /// The next event, or `None` once the run has ended or the flow shut down.
    ///
    /// # Errors
    /// When reading the log fails.
    pub async fn next(&mut self) -> Option<Result<StoredEvent, StoreError>> {
        self.next_shared()
            .await
            .map(|r| r.map(|shared| shared.event.clone()))
    }

    /// As [`next`](Self::next), without copying the event (the SSE bridge shares one rendered
    /// frame among its subscribers).
    pub(crate) async fn next_shared(&mut self) -> Next {
        std::future::poll_fn(|cx| self.poll_next_shared(cx)).await
    }

    /// The next event, polled: the SSE body reads its subscription this way, taking every
    /// event at hand for one socket write. Events already read from the log are returned
    /// without starting a read.
    pub(crate) fn poll_next_shared(&mut self, cx: &mut Context<'_>) -> Poll<Next> {
        loop {
            match std::mem::replace(&mut self.state, State::Done) {
                State::Done => return Poll::Ready(None),
                State::Idle(mut reader) => {
                    if let Some(event) = reader.buffered() {
                        self.cursor = reader.cursor;
                        self.state = State::Idle(reader);
                        return Poll::Ready(Some(Ok(event)));
                    }
                    self.state = State::Reading(Box::pin(async move {
                        let next = reader.next().await;
                        (reader, next)
                    }));
                }
                State::Reading(mut read) => match read.as_mut().poll(cx) {
                    Poll::Pending => {
                        self.state = State::Reading(read);
                        return Poll::Pending;
                    }
                    Poll::Ready((reader, next)) => {
                        self.cursor = reader.cursor;
                        if next.is_some() {
                            self.state = State::Idle(reader);
                        }
                        return Poll::Ready(next);
                    }
                },
            }
        }
    }
}

impl futures_core::Stream for EventSubscription {
    type Item = Result<StoredEvent, StoreError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut()
            .poll_next_shared(cx)
            .map(|next| next.map(|r| r.map(|shared| shared.event.clone())))
    }
}

/// The reading state behind an [`EventSubscription`].
struct Reader {
    store: DynStore,
    ik: IdempotencyKey,
    live: Live,
    cursor: Seq,
    /// Terminal events at or after this seq end the stream (the current run's).
    run_first_seq: Seq,
    buffer: VecDeque<Arc<SharedEvent>>,
    catching_up: bool,
    done: bool,
}

impl Reader {
    async fn next(&mut self) -> Next {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Some(Ok(self.deliver(event)));
            }
            if self.done {
                return None;
            }
            if self.catching_up {
                match self.read_log().await {
                    Ok(true) => continue,
                    Ok(false) => self.catching_up = false,
                    Err(e) => return Some(Err(e)),
                }
                continue;
            }
            let received = match self.live.next().await {
                Woken::Event(received) => received,
                // Another process's commits may not have been broadcast here: read the log.
                Woken::ReadLog => {
                    self.catching_up = true;
                    continue;
                }
            };
            match received {
                Ok(shared) if shared.event.seq <= self.cursor => {}
                Ok(shared) if shared.event.seq == self.cursor.next() => {
                    return Some(Ok(self.deliver(shared)));
                }
                // A gap (the log moved on before this receiver existed) or a lag: read back.
                Ok(_) | Err(RecvError::Lagged(_)) => self.catching_up = true,
                Err(RecvError::Closed) => self.done = true,
            }
        }
    }

    /// The next event already read from the log, if any.
    fn buffered(&mut self) -> Option<Arc<SharedEvent>> {
        let event = self.buffer.pop_front()?;
        Some(self.deliver(event))
    }

    fn deliver(&mut self, shared: Arc<SharedEvent>) -> Arc<SharedEvent> {
        let event = &shared.event;
        self.cursor = event.seq;
        if event.is_terminal() && event.seq >= self.run_first_seq {
            self.done = true;
            self.buffer.clear();
        }
        shared
    }

    /// Reads the next chunk of the log into the buffer; `false` when the log had nothing new.
    async fn read_log(&mut self) -> Result<bool, StoreError> {
        let chunk = self.store.events(&self.ik, self.cursor, CHUNK).await?;
        let got = !chunk.is_empty();
        self.buffer.extend(chunk.into_iter().map(SharedEvent::new));
        Ok(got)
    }
}
