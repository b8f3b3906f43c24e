//! A connection whose peer stopped reading: [`Watched`] wraps a socket and remembers since
//! when its writes have been waiting; `serve` drops a connection that waited longer than the
//! stall timeout, so a client that never reads its SSE stream holds nothing for long.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Since when the socket's writes wait (milliseconds after `origin`, plus one); 0: they do
/// not.
#[derive(Debug)]
pub(crate) struct WriteWait {
    origin: Instant,
    since: AtomicU64,
}

impl WriteWait {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            since: AtomicU64::new(0),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn waiting(&self) {
        if self.since.load(Ordering::Relaxed) == 0 {
            self.since.store(self.now(), Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.since.store(0, Ordering::Relaxed);
    }

    /// How long writes have been waiting (zero when they do not).
    pub(crate) fn waited(&self) -> Duration {
        match self.since.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            since => Duration::from_millis(self.now().saturating_sub(since)),
        }
    }
}

/// A socket whose pending writes are timed.
#[derive(Debug)]
pub(crate) struct Watched<S> {
    inner: S,
    wait: Arc<WriteWait>,
}

impl<S> Watched<S> {
    pub(crate) fn new(inner: S) -> (Self, Arc<WriteWait>) {
        let wait = WriteWait::new();
        (
            Self {
                inner,
                wait: wait.clone(),
            },
            wait,
        )
    }

    fn note<T>(&self, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match &poll {
            Poll::Pending => self.wait.waiting(),
            Poll::Ready(_) => self.wait.wrote(),
        }
        poll
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_write_that_cannot_proceed_is_timed_and_a_write_that_does_clears_it() {
        // A 64-byte pipe nobody reads: the second write waits.
        let (client, _server) = tokio::io::duplex(64);
        let (mut watched, wait) = Watched::new(client);
        watched.write_all(&[0; 64]).await.unwrap();
        assert_eq!(wait.waited(), Duration::ZERO);
        let blocked = tokio::time::timeout(Duration::from_millis(30), watched.write_all(&[0; 8]));
        assert!(blocked.await.is_err(), "the pipe is full");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            wait.waited() >= Duration::from_millis(20),
            "{:?}",
            wait.waited()
        );
    }
}
