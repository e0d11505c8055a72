//! `breakglass healthcheck`: asks a running bot or standalone gateway whether it is ready, for
//! container and orchestrator probes (the image has no shell and no curl).
//!
//! Exit 0 when `/readyz` answers 200; 1 when it answers anything else (the database is
//! unreachable, the process is stopping); 4 when nothing answers in time.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use shared::config::Overrides;

use crate::cli::{EXIT_FAILURE, EXIT_UNREACHABLE, EXIT_USAGE, Failure};

/// What to probe: a URL, or the bot (or the gateway's health listener) of the config.
#[derive(Debug)]
pub struct Probe {
    pub url: Option<String>,
    pub gateway: bool,
    pub config: Option<PathBuf>,
    pub timeout: Duration,
}

/// Runs the probe and prints one line: `ready`, or what answered instead.
///
/// # Errors
/// Not ready (exit 1), unreachable (exit 4), a URL or config that does not work (2, 5).
pub async fn run(p: Probe) -> Result<(), Failure> {
    let url = match p.url {
        Some(u) => with_path(&u)?,
        None => {
            let cfg = super::load_config(p.config, &Overrides::default())?;
            let addr = if p.gateway {
                cfg.gateway.health_listen.ok_or_else(|| {
                    Failure::new(
                        EXIT_USAGE,
                        "gateway.health_listen is \"off\" in the config: nothing to probe",
                    )
                })?
            } else {
                cfg.server.listen
            };
            format!("http://{}/readyz", reachable(addr))
        }
    };
    let client = reqwest::Client::builder()
        .timeout(p.timeout)
        .build()
        .map_err(|e| Failure::new(EXIT_FAILURE, format!("cannot make an HTTP client: {e}")))?;
    let resp = client.get(&url).send().await.map_err(|e| {
        Failure::new(EXIT_UNREACHABLE, format!("{url}: no answer: {}", without_url(&e)))
    })?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let body: String = body.trim().chars().take(200).filter(|c| !c.is_control()).collect();
    if status.is_success() {
        outln!("{url}: {body}");
        Ok(())
    } else {
        Err(Failure::new(EXIT_FAILURE, format!("{url}: not ready ({status}): {body}")))
    }
}

/// `http://host:port` probes `/readyz`; a URL with a path probes that path.
fn with_path(url: &str) -> Result<String, Failure> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        Failure::new(
            EXIT_USAGE,
            format!("`{url}` is not an http:// URL (probe the plain listener)"),
        )
    })?;
    if rest.is_empty() {
        return Err(Failure::new(EXIT_USAGE, format!("`{url}` names no host")));
    }
    Ok(if rest.contains('/') { url.to_owned() } else { format!("{url}/readyz") })
}

/// A listen address as a client reaches it: the unspecified address means this machine.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// A reqwest error's text without the URL it repeats.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(&format!(" ({u})"), "").replace(u.as_str(), "");
    }
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s = format!("{s}: {inner}");
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_listener_url_probes_readyz_and_a_path_is_kept() {
        assert_eq!(
            with_path("http://127.0.0.1:9222").ok().as_deref(),
            Some("http://127.0.0.1:9222/readyz")
        );
        assert_eq!(with_path("http://h:1/healthz").ok().as_deref(), Some("http://h:1/healthz"));
        assert!(with_path("https://h:1").is_err());
        assert!(with_path("http://").is_err());
    }

    #[test]
    fn an_unspecified_listen_address_is_probed_on_this_machine() {
        let any: SocketAddr = "0.0.0.0:9222".parse().expect("addr");
        assert_eq!(reachable(any).to_string(), "127.0.0.1:9222");
        let any6: SocketAddr = "[::]:8080".parse().expect("addr");
        assert_eq!(reachable(any6).to_string(), "[::1]:8080");
        let one: SocketAddr = "10.0.0.5:8080".parse().expect("addr");
        assert_eq!(reachable(one), one);
    }
}
