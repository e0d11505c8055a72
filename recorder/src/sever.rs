//! A byte stream the gateway can cut from outside, whatever the peer does.
//!
//! russh runs each connection in its own spawned loop, and that loop stops draining what the
//! gateway sends (a goodbye line, a close, a disconnect) once the peer stops reading one
//! channel. A cut must not wait for that: [`Severable`] wraps the TCP stream, and once its
//! token is cancelled every read and write fails at once (pending ones are woken), and
//! [`tcp`] also shuts the socket down through a duplicate of it, so the peer sees the
//! connection closed at once even if nothing polls the stream any more. Written here because
//! it is a few lines over tokio's `AsyncRead`/`AsyncWrite` and `CancellationToken`; no crate
//! does exactly this.

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
    /// Ends [`tcp`]'s watcher when the stream is dropped.
    _gone: Option<tokio_util::sync::DropGuard>,
}

/// `stream`, cut at once when `token` is cancelled: reads and writes fail, and the socket is
/// shut down both ways (the peer reads EOF) even if nothing is polling the stream.
///
/// # Errors
/// The socket cannot be duplicated (out of file descriptors).
pub fn tcp(
    stream: tokio::net::TcpStream,
    token: CancellationToken,
) -> io::Result<Severable<tokio::net::TcpStream>> {
    let std = stream.into_std()?;
    let dup = std.try_clone()?;
    let stream = tokio::net::TcpStream::from_std(std)?;
    let gone = CancellationToken::new();
    let (cut, ended) = (token.clone(), gone.clone());
    tokio::spawn(async move {
        tokio::select! {
            () = cut.cancelled() => {
                let _ = dup.shutdown(std::net::Shutdown::Both);
            }
            () = ended.cancelled() => {}
        }
    });
    let mut s = Severable::new(stream, token);
    s._gone = Some(gone.drop_guard());
    Ok(s)
}

impl<S> std::fmt::Debug for Severable<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Severable").field("severed", &self.token.is_cancelled()).finish()
    }
}

impl<S> Severable<S> {
    pub fn new(inner: S, token: CancellationToken) -> Self {
        Self { inner, severed: Box::pin(token.clone().cancelled_owned()), token, _gone: None }
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
    async fn a_severed_tcp_connection_is_closed_even_if_nobody_polls_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let token = CancellationToken::new();
        let held = tcp(server, token.clone()).expect("severable");
        token.cancel();
        // `held` is never polled again, yet the peer sees the close.
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(2), client.read(&mut buf))
            .await
            .expect("closed at once")
            .unwrap_or(0);
        assert_eq!(n, 0);
        drop(held);
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
