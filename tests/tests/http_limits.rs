//! The HTTP server under a flood from one source, with the real binary: idle connections over
//! the caps are closed at once, a request burst gets 429 `rate_limited`, connections that send
//! nothing (or stall) are closed after their timeouts, and a user from another address is
//! answered within a second throughout.
//!
//! Linux routes all of 127.0.0.0/8 to loopback, so the flood binds its sockets to 127.0.0.2 and
//! up while the legitimate user comes from 127.0.0.1. Counts and times are small and bounded.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::Server;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

const TOKEN: &str = "bg_http_limits_test_token";
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const IDLE_TIMEOUT: Duration = Duration::from_secs(8);
/// How late a timeout may fire on a busy machine (less than the gap between the two timeouts).
const SLACK: Duration = Duration::from_secs(2);
const PER_SOURCE: usize = 16;
const MAX_CONNECTIONS: usize = 40;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// `breakglass up` with small limits, started with a soft open-file limit of 256.
fn start(dir: &Path) -> Result<Server, Box<dyn std::error::Error>> {
    let hash = hex::encode(Sha256::digest(TOKEN.as_bytes()));
    let config = format!(
        "[server]\nheader_timeout = \"{}s\"\nidle_timeout = \"{}s\"\nmax_connections = {MAX_CONNECTIONS}\n\
         max_connections_per_source = {PER_SOURCE}\nrequests_per_second_per_source = 5\n\
         request_burst_per_source = 10\n\n[users.alice]\ngroups = [\"oncall\"]\napi_token_sha256 = \"{hash}\"\n",
        HEADER_TIMEOUT.as_secs(),
        IDLE_TIMEOUT.as_secs(),
    );
    let path = dir.join("breakglass.toml");
    std::fs::write(&path, config)?;
    let (p, d) = (path.to_str().ok_or("utf-8")?, dir.to_str().ok_or("utf-8")?);
    Ok(Server::start_under(
        &["prlimit", "--nofile=256:"],
        dir,
        &["--config", p, "--data-dir", d],
        &[],
    ))
}

fn addr_of(server: &Server) -> Result<SocketAddr, Box<dyn std::error::Error>> {
    Ok(server.url.trim_start_matches("http://").parse()?)
}

async fn connect_from(last: u8, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, last), 0)))?;
    s.connect(to).await
}

/// Whether the server closes `s` (EOF or reset) within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// One `GET path` from 127.0.0.`from` with the token: (status, body, Retry-After present).
async fn get(from: u8, to: SocketAddr, path: &str) -> std::io::Result<(u16, String, bool)> {
    let mut s = connect_from(from, to).await?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: bg\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .map_err(|_| std::io::Error::other("no answer in 10 s"))??;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let retry_after = text.to_ascii_lowercase().contains("\r\nretry-after: ");
    Ok((status, text, retry_after))
}

/// A legitimate request from 127.0.0.1 is answered (200) within a second.
async fn legit_is_answered(to: SocketAddr, when: &str) -> TestResult {
    let t = Instant::now();
    let (status, body, _) = get(1, to, "/api/v1/whoami").await?;
    let took = t.elapsed();
    assert_eq!(status, 200, "{when}: {body}");
    assert!(took < Duration::from_secs(1), "{when}: answered in {took:?}");
    Ok(())
}

/// Opens `n` connections from each 127.0.0.`from` in `sources` and sends nothing; returns
/// those still open after a second and how many the server closed at once.
async fn idle_flood(
    sources: &[u8],
    n: usize,
    to: SocketAddr,
) -> std::io::Result<(Vec<TcpStream>, usize)> {
    let mut conns = Vec::new();
    for from in sources {
        for _ in 0..n {
            conns.push(connect_from(*from, to).await?);
        }
    }
    let checks = conns.into_iter().map(|mut c| async move {
        let closed = closed_within(&mut c, Duration::from_secs(1)).await;
        (c, closed)
    });
    let mut open = Vec::new();
    let mut closed = 0;
    for (c, was_closed) in futures_util::future::join_all(checks).await {
        if was_closed {
            closed += 1;
        } else {
            open.push(c);
        }
    }
    Ok((open, closed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_source_gets_closed_connections_and_429_while_others_are_answered()
-> TestResult {
    let dir = tempfile::tempdir()?;
    let server = start(dir.path())?;
    let to = addr_of(&server)?;
    legit_is_answered(to, "before the flood").await?;

    // Idle connections from one source: 16 are kept (until the header timeout), the rest are
    // closed at once, not queued.
    let (held, closed) = idle_flood(&[2], 100, to).await?;
    assert_eq!(held.len(), PER_SOURCE, "kept from one source ({closed} closed)");
    assert_eq!(closed, 100 - PER_SOURCE);
    legit_is_answered(to, "during the idle flood").await?;

    // A request burst from another source: past the burst of 10, 429 with a stable code.
    let mut limited = 0;
    for _ in 0..30 {
        let (status, body, retry_after) = get(3, to, "/api/v1/whoami").await?;
        if status == 429 {
            assert!(body.contains("\"code\":\"rate_limited\""), "{body}");
            assert!(retry_after, "429 says when to retry: {body}");
            limited += 1;
        } else {
            assert_eq!(status, 200, "{body}");
        }
    }
    assert!(limited >= 15, "the burst was limited: {limited} of 30 got 429");
    assert_eq!(get(3, to, "/healthz").await?.0, 200, "health checks are not counted");
    legit_is_answered(to, "after the burst").await?;

    // The global cap: with 16 held from 127.0.0.2, 42 from three more sources overflow it.
    let (kept, over) = idle_flood(&[4, 5, 6], 14, to).await?;
    assert_eq!(kept.len() + held.len(), MAX_CONNECTIONS, "the cap is {MAX_CONNECTIONS}");
    assert_eq!(over, 3 * 14 + PER_SOURCE - MAX_CONNECTIONS);
    drop((held, kept));

    // The open-file limit was raised from 256 to the hard limit at start.
    let log = server.log();
    let hard = rlimit::getrlimit(rlimit::Resource::NOFILE)?.1;
    assert!(log.contains(&format!("open_files={hard}")), "{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_stalled_connections_are_closed_after_their_timeouts() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = start(dir.path())?;
    let to = addr_of(&server)?;

    // Never sends a request head: closed at the header timeout, not before.
    let silent = async {
        let mut s = connect_from(1, to).await?;
        let t = Instant::now();
        let closed = closed_within(&mut s, Duration::from_secs(20)).await;
        Ok::<_, std::io::Error>((closed, t.elapsed()))
    };
    // A whole head, then a body that stops: closed when nothing has moved for the idle timeout.
    let stalled = async {
        let mut s = connect_from(1, to).await?;
        let head = format!(
            "POST /api/v1/requests HTTP/1.1\r\nHost: bg\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"host\""
        );
        s.write_all(head.as_bytes()).await?;
        let t = Instant::now();
        let closed = closed_within(&mut s, Duration::from_secs(20)).await;
        Ok::<_, std::io::Error>((closed, t.elapsed()))
    };
    let (silent, stalled) = tokio::join!(silent, stalled);
    let (closed, took) = silent?;
    assert!(closed, "a silent connection is closed");
    assert!(
        took >= HEADER_TIMEOUT - Duration::from_millis(500) && took < HEADER_TIMEOUT + SLACK,
        "a silent connection is closed at the header timeout: {took:?}"
    );
    let (closed, took) = stalled?;
    assert!(closed, "a stalled body is closed");
    assert!(
        took >= IDLE_TIMEOUT - Duration::from_millis(500) && took < IDLE_TIMEOUT + SLACK,
        "a stalled body is closed at the idle timeout: {took:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_head_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = start(dir.path())?;
    let to = addr_of(&server)?;
    let mut s = connect_from(1, to).await?;
    let pad = "a".repeat(100 * 1024);
    let head = format!("GET /healthz HTTP/1.1\r\nHost: bg\r\nX-Pad: {pad}\r\n\r\n");
    // The server may stop reading (and close) before the whole head is written.
    let _ = s.write_all(head.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 431"), "a 100 KiB head is refused: {text}");
    Ok(())
}
