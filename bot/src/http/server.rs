//! The HTTP server's accept loop: the limits that keep any one client from starving the API.
//!
//! The loop owns the limits, the connection handler owns one connection (mini-redis'
//! `Listener`/`Handler` split):
//!
//! - at most `max_connections` open connections, and `max_connections_per_source` from one
//!   source; a connection over either cap is closed at once, never queued;
//! - a request head must arrive within `header_timeout` of connecting or of the previous
//!   response (hyper's header-read timer, which also closes idle kept-alive connections);
//! - a connection with no byte either way for `idle_timeout` is closed (a stalled body, a
//!   client that never reads its response);
//! - a request head is at most [`MAX_HEAD_BYTES`] (431 otherwise), so a connection holds little
//!   memory;
//! - each source gets `requests_per_second_per_source` with bursts of
//!   `request_burst_per_source` (governor's GCRA); more are answered 429 `rate_limited`.
//!   Health checks are not counted.
//!
//! A source is an IPv4 address or an IPv6 /64 (one host usually holds a whole /64).
//! Refusals are logged at most once per 10 s each, with a count, so a flood cannot fill the log.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse as _, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use shared::config::HttpLimits;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use super::error::ApiError;

/// Largest request head (request line and headers) read, in bytes; a longer one is answered
/// 431 and the connection closed (hyper's default is its whole read buffer, about 400 KiB).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// File descriptors kept for everything else (the gateway, the database, recordings) when the
/// connection cap is held to the open-file limit.
const FD_SHARE: u64 = 2;

/// The client's source for per-source limits: the IPv4 address, or the IPv6 /64.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The connection cap in force: `max_connections`, held to half the open-file limit so that a
/// flood of HTTP connections leaves descriptors for the gateway (and the reverse).
pub fn connection_cap(limits: &HttpLimits, open_files: Option<u64>) -> usize {
    let configured = u64::from(limits.max_connections);
    let cap = match open_files {
        Some(n) => configured.min((n / FD_SHARE).max(16)),
        None => configured,
    };
    usize::try_from(cap).unwrap_or(usize::MAX)
}

/// Serves `router` on `listener` under `limits` until `stop`, then lets open requests finish.
///
/// # Errors
/// None today: accept errors (such as running out of file descriptors) are logged and retried.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let open_files = rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft);
    let cap = connection_cap(&limits, open_files);
    if cap < limits.max_connections as usize {
        tracing::warn!(
            cap,
            open_files,
            "server.max_connections is more than half the open-file limit: holding it to {cap}"
        );
    }
    let shared = Arc::new(Shared::new(&limits, router));
    let slots = Arc::new(Semaphore::new(cap));
    let tracker = TaskTracker::new();
    let (mut refused, mut refused_source, mut accept_failed) =
        (Throttle::default(), Throttle::default(), Throttle::default());
    let mut last_purge = Instant::now();
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: wait for connections to close rather than spin.
                    if let Some(n) = accept_failed.hit() {
                        tracing::warn!(error = %e, times = n, "HTTP accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let source = source_of(peer.ip());
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if let Some(n) = refused.hit() {
                tracing::warn!(times = n, cap, "HTTP connections refused: too many open");
            }
            continue;
        };
        let Some(held) = shared.claim(source) else {
            if let Some(n) = refused_source.hit() {
                tracing::warn!(times = n, %source, "HTTP connections refused: too many from one source");
            }
            continue;
        };
        if last_purge.elapsed() > Duration::from_secs(60) {
            last_purge = Instant::now();
            if let Some(l) = &shared.limiter {
                l.retain_recent();
                l.shrink_to_fit();
            }
        }
        tracker.spawn(connection(stream, peer, shared.clone(), (slot, held), stop.clone()));
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// What every connection task shares.
struct Shared {
    router: Router,
    limits: HttpLimits,
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_source: Mutex<HashMap<IpAddr, u32>>,
}

impl Shared {
    fn new(limits: &HttpLimits, router: Router) -> Self {
        let limiter = NonZeroU32::new(limits.requests_per_second_per_source).map(|rate| {
            let burst = NonZeroU32::new(limits.request_burst_per_source).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Self { router, limits: limits.clone(), limiter, per_source: Mutex::default() }
    }

    /// One more connection from `source`, or `None` at its cap.
    fn claim(self: &Arc<Self>, source: IpAddr) -> Option<SourceHeld> {
        let max = self.limits.max_connections_per_source;
        let mut map = self.per_source.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(source).or_default();
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(SourceHeld { shared: self.clone(), source })
    }
}

/// One open connection counted against its source; released on drop.
struct SourceHeld {
    shared: Arc<Shared>,
    source: IpAddr,
}

impl Drop for SourceHeld {
    fn drop(&mut self) {
        let mut map =
            self.shared.per_source.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.source);
            }
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    held: (OwnedSemaphorePermit, SourceHeld),
    stop: CancellationToken,
) {
    let _held = held;
    let origin = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let io = Watched { inner: stream, origin, activity: activity.clone() };
    let source = source_of(peer.ip());
    let svc_shared = shared.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let shared = svc_shared.clone();
        async move { Ok::<_, Infallible>(handle(req, &shared, source, peer).await) }
    });
    let idle = shared.limits.idle_timeout;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.limits.header_timeout)
        .max_header_size(MAX_HEAD_BYTES);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        let last = origin + Duration::from_millis(activity.load(Ordering::Relaxed));
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended");
                }
                return;
            }
            () = stop.cancelled(), if !draining => {
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
            () = tokio::time::sleep_until(last + idle) => {
                let last = origin + Duration::from_millis(activity.load(Ordering::Relaxed));
                if last + idle <= Instant::now() {
                    tracing::debug!(%peer, "HTTP connection closed: idle for {idle:?}");
                    return;
                }
            }
        }
    }
}

/// Paths not counted against the request rate: load balancers' health checks.
fn counted(path: &str) -> bool {
    !matches!(path, "/healthz" | "/readyz" | "/metrics")
}

async fn handle(
    req: hyper::Request<Incoming>,
    shared: &Shared,
    source: IpAddr,
    peer: SocketAddr,
) -> Response {
    if let Some(limiter) = &shared.limiter
        && counted(req.uri().path())
        && let Err(not_until) = limiter.check_key(&source)
    {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        tracing::debug!(source = %source, "HTTP request refused: rate limit");
        return ApiError::RateLimited { retry_after: wait.as_secs() + 1 }.into_response();
    }
    let mut req = req.map(axum::body::Body::new);
    req.extensions_mut().insert(ConnectInfo(peer));
    match shared.router.clone().oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// The TCP stream, noting when a byte last moved either way (milliseconds since `origin`).
struct Watched {
    inner: TcpStream,
    origin: Instant,
    activity: Arc<AtomicU64>,
}

impl Watched {
    fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.activity.store(ms, Ordering::Relaxed);
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A repeated event logged at most once per 10 s, with how many times it happened.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    count: u64,
}

impl Throttle {
    /// Counts one event; `Some(count since the last log)` when it is time to log again.
    fn hit(&mut self) -> Option<u64> {
        self.count += 1;
        if self.last.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_addresses_and_ipv6_slash_64s() {
        let v6 = |s: &str| source_of(s.parse().expect("address"));
        assert_eq!(v6("2001:db8:1:2:aaaa::1"), v6("2001:db8:1:2:bbbb::9"));
        assert_ne!(v6("2001:db8:1:2::1"), v6("2001:db8:1:3::1"));
        assert_eq!(v6("::ffff:10.0.0.1"), v6("10.0.0.1"));
        assert_ne!(v6("10.0.0.1"), v6("10.0.0.2"));
    }

    #[test]
    fn the_connection_cap_leaves_half_the_descriptors() {
        let limits = HttpLimits::default();
        assert_eq!(connection_cap(&limits, Some(1024)), 512);
        assert_eq!(connection_cap(&limits, Some(1 << 20)), 1024);
        assert_eq!(connection_cap(&limits, None), 1024);
    }
}
