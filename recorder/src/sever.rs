//! A byte stream the gateway can cut from outside, whatever the peer does.
//!
//! russh runs each connection in its own loop, and that loop stops draining what the gateway
//! sends (a goodbye line, a close, a disconnect) once the peer stops reading one channel. A
//! cut must not wait for that: [`Severable`] wraps the TCP stream, and once its token is
//! cancelled every read and write fails at once (pending ones are woken), so the loop that
//! owns it ends and drops the socket. Written here because it is a dozen lines over tokio's
//! `AsyncRead`/`AsyncWrite` and `CancellationToken`; no crate does exactly this.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// `inner`, until `token` is cancelled: from then on every read and write fails.
pub struct Severable<S> {
    inner: S,
    severed: Pin<Box<WaitForCancellationFutureOwned>>,
    token: CancellationToken,
}

impl<S> std::fmt::Debug for Severable<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Severable").field("severed", &self.token.is_cancelled()).finish()
    }
}

impl<S> Severable<S> {
    pub fn new(inner: S, token: CancellationToken) -> Self {
        Self { inner, severed: Box::pin(token.clone().cancelled_owned()), token }
    }

    /// Ready (with the error to return) once the token is cancelled; otherwise registers the
    /// waker so a pending read or write wakes up at the cut.
    fn check(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if self.token.is_cancelled() || self.severed.as_mut().poll(cx).is_ready() {
            return Some(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "severed by the gateway",
            ));
        }
        None
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Severable<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Severable<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.token.is_cancelled() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test]
    async fn a_pending_read_fails_at_the_cut_and_the_peer_sees_the_close() {
        let (a, mut b) = tokio::io::duplex(64);
        let token = CancellationToken::new();
        let mut s = Severable::new(a, token.clone());
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            let r = s.read(&mut buf).await;
            drop(s);
            r
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        token.cancel();
        let r = tokio::time::timeout(Duration::from_secs(2), reader)
            .await
            .expect("woken at the cut")
            .expect("task");
        assert_eq!(r.expect_err("fails").kind(), io::ErrorKind::ConnectionAborted);
        // The stream was dropped: the far side reads EOF.
        let mut buf = [0u8; 1];
        assert_eq!(b.read(&mut buf).await.expect("eof"), 0);
    }

    #[tokio::test]
    async fn a_write_blocked_on_a_full_peer_fails_at_the_cut() {
        let (a, _b) = tokio::io::duplex(16);
        let token = CancellationToken::new();
        let mut s = Severable::new(a, token.clone());
        let writer = tokio::spawn(async move { s.write_all(&[0u8; 1024]).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        token.cancel();
        let r = tokio::time::timeout(Duration::from_secs(2), writer)
            .await
            .expect("woken at the cut")
            .expect("task");
        assert!(r.is_err());
    }
}
