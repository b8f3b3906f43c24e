//! A connection whose peer stopped reading: [`Watched`] wraps a socket, and once a write has
//! been unable to proceed for the stall timeout it fails that write, so hyper closes the
//! connection and a client that never reads its SSE stream holds nothing for long.
//!
//! The timer exists only while a write waits (an idle connection carries none), and any
//! progress of a write clears it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// A socket whose writes may wait at most the stall timeout.
#[derive(Debug)]
pub(crate) struct Watched<S> {
    inner: S,
    stall_after: Duration,
    peer: SocketAddr,
    /// Fires the stall timeout after the current write started waiting; `None` while writes
    /// proceed.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl<S> Watched<S> {
    pub(crate) fn new(inner: S, stall_after: Duration, peer: SocketAddr) -> Self {
        Self {
            inner,
            stall_after,
            peer,
            waiting: None,
        }
    }

    fn note<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.waiting = None;
            return poll;
        }
        let stall_after = self.stall_after;
        let timer = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall_after)));
        match timer.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                tracing::info!(peer = %self.peer, ?stall_after, "the client read nothing for the stall timeout; closing its connection");
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the peer read nothing for {stall_after:?}"),
                )))
            }
        }
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
        self.note(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const NOWHERE: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::LOCALHOST,
        0,
    ));

    #[tokio::test]
    async fn a_write_that_cannot_proceed_fails_after_the_stall_timeout() {
        // A 64-byte pipe nobody reads: the second write waits.
        let (client, _server) = tokio::io::duplex(64);
        let mut watched = Watched::new(client, Duration::from_millis(50), NOWHERE);
        watched.write_all(&[0; 64]).await.unwrap();
        assert!(watched.waiting.is_none());
        let started = std::time::Instant::now();
        let blocked = tokio::time::timeout(Duration::from_secs(5), watched.write_all(&[0; 8]));
        let error = blocked
            .await
            .expect("the write fails, it does not hang")
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(
            started.elapsed() >= Duration::from_millis(50),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_write_that_proceeds_clears_the_timer() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut watched = Watched::new(client, Duration::from_millis(200), NOWHERE);
        watched.write_all(&[0; 64]).await.unwrap();
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            // Reads a little every 100 ms: the writer waits, but never for 200 ms at once.
            let mut buf = [0u8; 32];
            let mut total = 0;
            while total < 64 + 256 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                total += server.read(&mut buf).await.unwrap();
            }
        });
        watched
            .write_all(&[0; 256])
            .await
            .expect("a slow reader is not a stalled one");
        assert!(watched.waiting.is_none());
        reader.await.unwrap();
    }
}
