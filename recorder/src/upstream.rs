//! The connection to the target: a russh client that trusts only the host key pinned for the
//! target in the gateway's known_hosts file, and logs in with the session's certificate.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::PublicKeyOrCertificate;
use russh::keys::ssh_key::HashAlg;
use russh::{Channel, ChannelOpenFailure};
use tokio::sync::mpsc;

use tokio_util::sync::CancellationToken;

use crate::keys::SessionCredential;

/// Why the target could not be reached. The grant is not used up in any of these cases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("{host} ({addr}) did not answer within {secs} s")]
    Timeout { host: String, addr: String, secs: u64 },
    #[error("cannot connect to {host} ({addr}): {why}")]
    Connect { host: String, addr: String, why: String },
    #[error(
        "the host key of {host} ({addr}) is {fingerprint}, which does not match the key pinned in {file}: refusing to connect"
    )]
    HostKeyMismatch { host: String, addr: String, fingerprint: String, file: String },
    #[error(
        "the host key of {host} ({addr}) is not pinned in {file}: add it (ssh-keyscan -p {port} {ip} >> {file})"
    )]
    HostKeyUnknown { host: String, addr: String, port: u16, ip: String, file: String },
    #[error(
        "{host} refused the session certificate for login `{login}` (is TrustedUserCAKeys set to `breakglass ca public-key`, and does `{login}` exist?)"
    )]
    AuthRefused { host: String, login: String },
}

impl UpstreamError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "target_timeout",
            Self::Connect { .. } => "target_unreachable",
            Self::HostKeyMismatch { .. } => "host_key_mismatch",
            Self::HostKeyUnknown { .. } => "host_key_unknown",
            Self::AuthRefused { .. } => "target_refused",
        }
    }
}

/// What the host key check found, kept for the error message.
#[derive(Debug, Clone)]
enum KeyCheck {
    Unknown,
    Mismatch(String),
}

/// What a channel the target opens towards the user carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// A connection to a port the user asked the target to listen on (`ssh -R`).
    ForwardedTcpip {
        connected_address: String,
        connected_port: u32,
        originator_address: String,
        originator_port: u32,
    },
    /// A program on the target using the user's forwarded agent (`ssh -A`).
    Agent,
    /// An X11 client on the target (`ssh -X`/`-Y`).
    X11 { originator_address: String, originator_port: u32 },
}

/// A channel the target opened, waiting for the gateway to bridge it to the user or refuse
/// it (dropping `reply` refuses).
pub struct Inbound {
    pub what: Opened,
    pub channel: Channel<client::Msg>,
    pub reply: client::ChannelOpenHandle,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound").field("what", &self.what).finish_non_exhaustive()
    }
}

/// The russh client handler: pins the target's host key, and hands the channels the target
/// opens to the session, which alone decides on them. Every other kind of channel the target
/// might open is refused.
#[derive(Debug)]
pub struct TargetHandler {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    found: Arc<Mutex<Option<KeyCheck>>>,
    inbound: mpsc::UnboundedSender<Inbound>,
}

impl client::Handler for TargetHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            self.note(KeyCheck::Mismatch("a host certificate (pin the host key instead)".into()));
            return Ok(false);
        };
        match russh::keys::check_known_hosts_path(&self.host, self.port, key, &self.known_hosts) {
            Ok(true) => Ok(true),
            Ok(false) => {
                self.note(KeyCheck::Unknown);
                Ok(false)
            }
            Err(_) => {
                self.note(KeyCheck::Mismatch(key.fingerprint(HashAlg::Sha256).to_string()));
                Ok(false)
            }
        }
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: Channel<client::Msg>,
        connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let what = Opened::ForwardedTcpip {
            connected_address: connected_address.to_owned(),
            connected_port,
            originator_address: originator_address.to_owned(),
            originator_port,
        };
        self.hand_over(what, channel, reply);
        Ok(())
    }

    async fn server_channel_open_agent_forward(
        &mut self,
        channel: Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.hand_over(Opened::Agent, channel, reply);
        Ok(())
    }

    async fn server_channel_open_x11(
        &mut self,
        channel: Channel<client::Msg>,
        originator_address: &str,
        originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let what =
            Opened::X11 { originator_address: originator_address.to_owned(), originator_port };
        self.hand_over(what, channel, reply);
        Ok(())
    }

    // russh accepts these by default; a target has no business opening them.
    async fn server_channel_open_session(
        &mut self,
        _channel: Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
        Ok(())
    }

    async fn server_channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<client::Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
        Ok(())
    }

    async fn server_channel_open_forwarded_streamlocal(
        &mut self,
        _channel: Channel<client::Msg>,
        _socket_path: &str,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
        Ok(())
    }
}

impl TargetHandler {
    /// Passes a target-opened channel to the session, which decides on it. Once the session
    /// is gone (ended, or refused before it went live) the receiver is dropped: the reply is
    /// dropped with the message, which refuses the channel.
    fn hand_over(
        &self,
        what: Opened,
        channel: Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
    ) {
        let _ = self.inbound.send(Inbound { what, channel, reply });
    }

    fn note(&self, k: KeyCheck) {
        if let Ok(mut f) = self.found.lock() {
            *f = Some(k);
        }
    }
}

/// An authenticated connection to the target.
pub type TargetSession = client::Handle<TargetHandler>;

/// What `connect` hands back: the session, the channels the target opens, and the token that
/// severs the TCP connection to the target at once (a cut never waits for russh's loop).
pub type Connected = (TargetSession, mpsc::UnboundedReceiver<Inbound>, CancellationToken);

/// Ciphers for the leg to the target, fastest first on CPUs with AES instructions (the
/// gateway chooses here: in SSH the client's order wins).
const UPSTREAM_CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_256_GCM,
    russh::cipher::AES_128_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_128_CTR,
];

/// The client configuration: large windows and packets for throughput, keepalives, no Nagle.
pub fn client_config() -> Arc<client::Config> {
    Arc::new(client::Config {
        preferred: russh::Preferred {
            cipher: std::borrow::Cow::Borrowed(UPSTREAM_CIPHERS),
            ..russh::Preferred::DEFAULT
        },
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 32 * 1024,
        channel_buffer_size: 256,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        inactivity_timeout: None,
        nodelay: true,
        ..client::Config::default()
    })
}

/// Connects to `addr` (`host:port` from the gateway's config), checks its host key against
/// `known_hosts`, and logs in as `login` with the session certificate, all within `timeout`.
/// Channels the target opens later (forwarding the scope allows) arrive on the receiver.
///
/// # Errors
/// Any [`UpstreamError`].
pub async fn connect(
    host_name: &str,
    addr: &str,
    known_hosts: PathBuf,
    cred: &SessionCredential,
    login: &str,
    timeout: Duration,
) -> Result<Connected, UpstreamError> {
    let (ip, port) = split_addr(addr);
    let found = Arc::new(Mutex::new(None));
    let (inbound, inbound_rx) = mpsc::unbounded_channel();
    let handler = TargetHandler {
        host: ip.clone(),
        port,
        known_hosts: known_hosts.clone(),
        found: found.clone(),
        inbound,
    };
    let file = known_hosts.display().to_string();
    let sever = CancellationToken::new();
    let attempt = async {
        let connected = match tokio::net::TcpStream::connect(addr).await {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                match crate::sever::tcp(tcp, sever.clone()) {
                    Ok(tcp) => client::connect_stream(client_config(), tcp, handler).await,
                    Err(e) => Err(russh::Error::IO(e)),
                }
            }
            Err(e) => Err(russh::Error::IO(e)),
        };
        let mut session = match connected {
            Ok(s) => s,
            Err(e) => {
                let noted = found.lock().ok().and_then(|f| f.clone());
                return Err(match noted {
                    Some(KeyCheck::Unknown) => UpstreamError::HostKeyUnknown {
                        host: host_name.to_owned(),
                        addr: addr.to_owned(),
                        port,
                        ip: ip.clone(),
                        file: file.clone(),
                    },
                    Some(KeyCheck::Mismatch(fingerprint)) => UpstreamError::HostKeyMismatch {
                        host: host_name.to_owned(),
                        addr: addr.to_owned(),
                        fingerprint,
                        file: file.clone(),
                    },
                    None => UpstreamError::Connect {
                        host: host_name.to_owned(),
                        addr: addr.to_owned(),
                        why: e.to_string(),
                    },
                });
            }
        };
        let auth = session
            .authenticate_openssh_cert(login, cred.key.clone(), cred.cert.clone())
            .await
            .map_err(|e| UpstreamError::Connect {
                host: host_name.to_owned(),
                addr: addr.to_owned(),
                why: e.to_string(),
            })?;
        if !auth.success() {
            return Err(UpstreamError::AuthRefused {
                host: host_name.to_owned(),
                login: login.to_owned(),
            });
        }
        Ok(session)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(s)) => Ok((s, inbound_rx, sever)),
        Ok(Err(e)) => {
            sever.cancel();
            Err(e)
        }
        Err(_) => {
            sever.cancel();
            Err(UpstreamError::Timeout {
                host: host_name.to_owned(),
                addr: addr.to_owned(),
                secs: timeout.as_secs(),
            })
        }
    }
}

/// `("10.0.0.11", 22)` from `10.0.0.11:22` or `[::1]:22`.
fn split_addr(addr: &str) -> (String, u16) {
    match addr.rsplit_once(':') {
        Some((h, p)) => {
            (h.trim_start_matches('[').trim_end_matches(']').to_owned(), p.parse().unwrap_or(22))
        }
        None => (addr.to_owned(), 22),
    }
}
