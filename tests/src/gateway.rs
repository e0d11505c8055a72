//! A whole break-glass world for gateway tests: a real OpenSSH `sshd` as the target (trusting
//! the gateway's CA), a running `breakglass up` (HTTP API and SSH gateway), users with real
//! SSH keys, and helpers to request, approve and connect with the real `ssh`, `scp`, `sftp`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::{Server, bin, block_on, cli};

/// The login used on the target: the user running the tests (root in CI), so the throwaway
/// sshd can log them in.
pub fn login() -> String {
    let out = Command::new("id").arg("-un").output().expect("id runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind :0");
    l.local_addr().expect("local addr").port()
}

/// An OpenSSH sshd on 127.0.0.1, configured in its own directory.
#[derive(Debug)]
pub struct Sshd {
    pub port: u16,
    pub host_key_pub: String,
    child: Child,
    pub dir: PathBuf,
}

impl Sshd {
    /// Starts sshd trusting `ca_line` for user certificates (and nothing else).
    ///
    /// # Panics
    /// When sshd is missing or does not start (the message says to run scripts/test).
    // The child moves into `Sshd`, whose `Drop` kills and waits for it.
    #[allow(clippy::zombie_processes)]
    pub fn start(dir: &Path, ca_line: &str) -> Self {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "/usr/sbin/sshd is missing: install Debian's openssh-server (scripts/test does)"
        );
        std::fs::create_dir_all(dir).expect("sshd dir");
        let _ = std::fs::create_dir_all("/run/sshd");
        let key = dir.join("ssh_host_ed25519_key");
        run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key));
        std::fs::write(dir.join("ca.pub"), format!("{ca_line}\n")).expect("ca.pub");
        let host_key_pub =
            std::fs::read_to_string(dir.join("ssh_host_ed25519_key.pub")).expect("host pub");
        // X11 forwarding: sshd runs xauth for the session; this wrapper keeps its cookie in
        // the test's directory instead of the login's ~/.Xauthority.
        let xauth = dir.join("xauth.sh");
        std::fs::write(
            &xauth,
            format!(
                "#!/bin/sh\nXAUTHORITY={}/Xauthority exec /usr/bin/xauth \"$@\"\n",
                dir.display()
            ),
        )
        .expect("xauth.sh");
        std::fs::set_permissions(&xauth, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod xauth.sh");
        // MaxSessions: the target allows more channels per connection than the gateway, so
        // the gateway's own limit is what the tests meet (tests/tests/hostile.rs).
        for _ in 0..5 {
            let port = free_port();
            let cfg = format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {key}\nPidFile {dir}/sshd.pid\n\
                 AuthorizedKeysFile none\nTrustedUserCAKeys {dir}/ca.pub\nUsePAM no\nStrictModes no\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 Subsystem sftp internal-sftp\nLogLevel VERBOSE\nAllowTcpForwarding yes\nAcceptEnv LANG LC_* SECRET\n\
                 AllowAgentForwarding yes\nX11Forwarding yes\nX11DisplayOffset 10\nXauthLocation {xauth}\n\
                 MaxSessions 64\n",
                xauth = xauth.display(),
                key = key.display(),
                dir = dir.display()
            );
            let cfg_path = dir.join("sshd_config");
            std::fs::write(&cfg_path, cfg).expect("sshd_config");
            let log = std::fs::File::create(dir.join("sshd.log")).expect("sshd.log");
            let mut child = Command::new(sshd)
                .args(["-D", "-e", "-f"])
                .arg(&cfg_path)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("sshd starts");
            // Listening (true), or exited, likely because another process took the port.
            let up = test_util::poll(Duration::from_secs(10), Duration::from_millis(20), || {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(true);
                }
                child.try_wait().ok().flatten().map(|_| false)
            });
            if up == Some(true) {
                return Self { port, host_key_pub, child, dir: dir.to_owned() };
            }
            let _ = child.kill();
        }
        panic!(
            "sshd did not start: {}",
            std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
        );
    }

    /// The known_hosts line pinning this sshd's host key.
    pub fn known_hosts_line(&self) -> String {
        let mut parts = self.host_key_pub.split_whitespace();
        let (t, k) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
        format!("[127.0.0.1]:{} {t} {k}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real `ssh-agent` holding one fresh Ed25519 key, for agent forwarding tests.
#[derive(Debug)]
pub struct Agent {
    pub sock: PathBuf,
    /// The key's public line (`ssh-ed25519 AAAA… comment`).
    pub public: String,
    child: Child,
}

impl Agent {
    /// Starts `ssh-agent -D` on a socket in `dir` and adds a new key to it.
    ///
    /// # Panics
    /// When ssh-agent or ssh-add fail.
    // The child moves into `Agent`, whose `Drop` kills and waits for it.
    #[allow(clippy::zombie_processes)]
    pub fn start(dir: &Path) -> Self {
        let sock = dir.join("agent.sock");
        let key = dir.join("agent_key");
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "agent-forwarded-key", "-f"])
            .arg(&key));
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent starts");
        test_util::wait_until(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || sock.exists().then_some(()),
            || "ssh-agent made no socket".to_owned(),
        );
        run(Command::new("ssh-add").env("SSH_AUTH_SOCK", &sock).arg(&key));
        let public = std::fs::read_to_string(key.with_extension("pub")).expect("agent key .pub");
        Self { sock, public: public.trim().to_owned(), child }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Options for an OpenSSH client of the tests: the private key `key` only, no host key
/// prompts, no config file, no questions, errors only.
pub fn client_opts(key: &Path) -> Vec<String> {
    let mut o: Vec<String> = ["-F", "/dev/null", "-i"].iter().map(|s| (*s).to_owned()).collect();
    o.push(key.to_str().expect("utf-8").to_owned());
    for opt in [
        "IdentitiesOnly=yes",
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "BatchMode=yes",
        "LogLevel=ERROR",
    ] {
        o.push("-o".to_owned());
        o.push(opt.to_owned());
    }
    o
}

/// Options for a test world.
#[derive(Debug, Clone, Default)]
pub struct WorldOptions {
    /// Extra lines for `[scopes.prod]` (e.g. `max_duration = "5s"`).
    pub scope_extra: String,
    /// Extra lines for `[gateway]` (e.g. `revocation_poll = "1h"`).
    pub gateway_extra: String,
    /// Pin a wrong host key for db-1 instead of the real one.
    pub wrong_host_key: bool,
    /// Extra environment for `breakglass up`.
    pub env: Vec<(String, String)>,
    /// Run on a fresh PostgreSQL database instead of SQLite.
    pub postgres: bool,
    /// Enable Slack against this Web API URL (a `FakeSlack`), with the test signing secret.
    pub slack_api: Option<String>,
    /// With `slack_api`: Socket Mode (`slack.socket_mode = true`, the app token in
    /// `slack.app_token_file`, [`SLACK_APP_TOKEN`]) and no signing secret at all.
    pub slack_socket: bool,
    /// Enable Discord against this REST base (a `FakeDiscord`), with the test application key.
    pub discord_api: Option<String>,
    /// Whole tables appended to the config (e.g. another `[scopes.NAME]`, or
    /// `[keys.pinned_approver_keys]`).
    pub extra_toml: String,
}

/// The Discord channel requests come from.
pub use test_util::world::DISCORD_CHANNEL;

/// What bash writes just before it draws a prompt (bracketed paste on): a test waits for it,
/// not for the prompt's text, which the echo of the line that set it also shows.
pub const PROMPT_READY: &str = "\x1b[?2004h";
/// The Slack signing secret of gateway worlds.
pub const SLACK_SECRET: &str = "e2e-slack-signing-secret";
/// The Slack app-level token of Socket Mode worlds.
pub const SLACK_APP_TOKEN: &str = "xapp-1-e2e-socket-mode-app-token";
/// The channel Slack requests come from.
pub use test_util::world::SLACK_CHANNEL;

/// sshd + `breakglass up` for the test world's users (`test_util::world`: alice requests, bob
/// and carol approve, erin reviews; alice and dave have SSH keys) in one scope, `prod`.
#[derive(Debug)]
pub struct World {
    pub dir: tempfile::TempDir,
    pub sshd: Sshd,
    pub server: Server,
    pub gw_port: u16,
    pub login: String,
    pub config: PathBuf,
    pub database_url: String,
    http: reqwest::blocking::Client,
    pg: Option<shared::testing::db::PgDatabase>,
    env: Vec<(String, String)>,
}

/// `breakglass up` for a world, run by `wrapper` (see [`Server::start_under`]; none: as is).
fn start_server(
    wrapper: &[&str],
    dir: &Path,
    config: &Path,
    data: &Path,
    gw_port: u16,
    env: &[(String, String)],
) -> Server {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start_under(
        wrapper,
        dir,
        &[
            "--config",
            config.to_str().expect("utf-8"),
            "--data-dir",
            data.to_str().expect("utf-8"),
            "--ssh-listen",
            &format!("127.0.0.1:{gw_port}"),
        ],
        &env,
    )
}

impl Drop for World {
    fn drop(&mut self) {
        self.server.kill9();
        if let Some(pg) = self.pg.take() {
            block_on(pg.remove());
        }
    }
}

/// The API token of `who` (the test world's).
pub use test_util::world::token;

impl World {
    pub fn start() -> Self {
        Self::with(WorldOptions::default())
    }

    /// # Panics
    /// On any setup failure, with the logs.
    pub fn with(mut opts: WorldOptions) -> Self {
        let pg = opts.postgres.then(|| block_on(shared::testing::db::PgDatabase::create()));
        if let Some(pg) = &pg {
            opts.env.push(("BREAKGLASS__SERVER__DATABASE_URL".into(), pg.url.clone()));
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let data = d.join("data");
        let slack_section = match &opts.slack_api {
            Some(url) if opts.slack_socket => {
                opts.env.push(("BREAKGLASS_SLACK_BOT_TOKEN".into(), "xoxb-e2e".into()));
                let token_file = d.join("slack-app-token");
                std::fs::write(&token_file, format!("{SLACK_APP_TOKEN}\n")).expect("app token");
                std::fs::set_permissions(
                    &token_file,
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )
                .expect("chmod app token");
                format!(
                    "[slack]\napi_url = \"{url}\"\nsocket_mode = true\napp_token_file = \"{}\"\n",
                    token_file.display()
                )
            }
            Some(url) => {
                opts.env.push(("BREAKGLASS_SLACK_SIGNING_SECRET".into(), SLACK_SECRET.into()));
                opts.env.push(("BREAKGLASS_SLACK_BOT_TOKEN".into(), "xoxb-e2e".into()));
                format!("[slack]\napi_url = \"{url}\"\n")
            }
            None => String::new(),
        };
        let discord_section = match &opts.discord_api {
            Some(url) => {
                opts.env.push(("BREAKGLASS_DISCORD_BOT_TOKEN".into(), "discord-e2e-token".into()));
                format!(
                    "[discord]\napi_base = \"{url}\"\napplication_id = {}\npublic_key = \"{}\"\n",
                    crate::fake_discord::APP_ID,
                    crate::fake_discord::Signer::default().public_key_hex()
                )
            }
            None => String::new(),
        };
        // The CA is generated under the data directory by the first command that needs it.
        let ca = cli(&["ca", "public-key", "--data-dir", data.to_str().expect("utf-8")], &[]);
        assert_eq!(ca.code, 0, "{}", ca.all());
        let sshd = Sshd::start(&d.join("sshd"), ca.stdout.trim());
        for (name, kind) in [
            ("alice", "ed25519"),
            ("alice-rsa", "rsa"),
            ("alice-ecdsa", "ecdsa"),
            ("dave", "ed25519"),
            ("mallory", "ed25519"),
        ] {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", kind, "-N", "", "-C", name, "-f"])
                .arg(d.join(name)));
        }
        let alice_keys: Vec<String> = ["alice", "alice-rsa", "alice-ecdsa"]
            .iter()
            .map(|k| {
                format!(
                    "\"{}\"",
                    std::fs::read_to_string(d.join(format!("{k}.pub"))).expect("pub").trim()
                )
            })
            .collect();
        let known_hosts = d.join("known_hosts");
        let line = if opts.wrong_host_key {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join("impostor")));
            let other = std::fs::read_to_string(d.join("impostor.pub")).expect("impostor.pub");
            let mut parts = other.split_whitespace();
            let (t, k) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
            format!("[127.0.0.1]:{} {t} {k}", sshd.port)
        } else {
            sshd.known_hosts_line()
        };
        std::fs::write(&known_hosts, format!("{line}\n")).expect("known_hosts");
        let login = login();
        let dead_port = free_port();
        let config = format!(
            r#"
{slack_section}
{discord_section}
[gateway]
known_hosts_file = "{kh}"
connect_timeout = "5s"
{gateway_extra}

{users}
[scopes.prod]
hosts = {{ db-1 = "127.0.0.1:{port}", dead-1 = "127.0.0.1:{dead_port}" }}
logins = ["{login}", "nobody"]
requester_groups = ["oncall"]
approver_groups = ["dba"]
quorum = 2
channels = ["{channel}", "{discord_channel}"]
{extra}
{extra_toml}
"#,
            kh = known_hosts.display(),
            users = test_util::world::users_toml(&[
                ("alice", format!("ssh_keys = [{}]", alice_keys.join(", "))),
                (
                    "dave",
                    format!(
                        "ssh_keys = [\"{}\"]",
                        std::fs::read_to_string(d.join("dave.pub")).expect("dave.pub").trim()
                    ),
                ),
            ]),
            port = sshd.port,
            extra = opts.scope_extra,
            extra_toml = opts.extra_toml,
            gateway_extra = opts.gateway_extra,
            channel = SLACK_CHANNEL,
            discord_channel = DISCORD_CHANNEL,
        );
        let config_path = d.join("breakglass.toml");
        std::fs::write(&config_path, config).expect("config");
        let gw_port = free_port();
        let server = start_server(&[], d, &config_path, &data, gw_port, &opts.env);
        let http = reqwest::blocking::Client::new();
        let database_url = opts
            .env
            .iter()
            .find(|(k, _)| k == "BREAKGLASS__SERVER__DATABASE_URL")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| format!("sqlite://{}", data.join("breakglass.db").display()));
        Self {
            dir,
            sshd,
            server,
            gw_port,
            login,
            config: config_path,
            database_url,
            http,
            pg,
            env: opts.env,
        }
    }

    /// Starts `breakglass up` again (after `server.kill9()`), same ports, same data.
    pub fn restart(&mut self) {
        self.restart_under(&[]);
    }

    /// Kills `breakglass up` (SIGKILL, as [`Server::kill9`]) and starts it again on the same
    /// ports and data, run by `wrapper` (see [`Server::start_under`]; none: as is).
    pub fn restart_under(&mut self, wrapper: &[&str]) {
        self.server.kill9();
        let data = self.data_dir();
        self.server =
            start_server(wrapper, self.dir.path(), &self.config, &data, self.gw_port, &self.env);
        self.http = reqwest::blocking::Client::new();
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A JSON call to the API as `who`.
    pub fn api(&self, who: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.server.url);
        crate::api_call(&self.http, &url, &token(who), method, body)
    }

    /// Requests `host` as alice for `duration` and has bob and carol approve; returns the code.
    pub fn grant(&self, host: &str, duration: Option<&str>) -> String {
        let mut body = json!({ "host": host, "login": self.login, "reason": "gateway test" });
        if let Some(d) = duration {
            body["duration"] = json!(d);
        }
        let (s, v) = self.api("alice", "POST", "/api/v1/requests", Some(body));
        assert_eq!(s, 201, "{v}");
        let code = v["code"].as_str().expect("code").to_owned();
        for who in ["bob", "carol"] {
            let (s, v) = self.api(who, "POST", &format!("/api/v1/requests/{code}/approve"), None);
            assert_eq!(s, 200, "{v}");
        }
        code
    }

    pub fn status(&self, code: &str) -> Value {
        self.api("alice", "GET", &format!("/api/v1/requests/{code}"), None).1
    }

    /// `ssh` to the gateway as `user` with `key_name`'s key; the rest of `args` follow.
    pub fn ssh_cmd(&self, key_name: &str, user: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.ssh_opts(key_name))
            .args(["-p", &self.gw_port.to_string()])
            .arg(format!("{user}@127.0.0.1"))
            .args(args);
        c
    }

    /// A session of alice's running `echo LINE; sleep 30`, once LINE arrived and the grant shows
    /// `active` (so a revoke that follows cannot cut it before its first output): the child
    /// and what it printed.
    pub fn printing(
        &self,
        code: &str,
        line: &str,
    ) -> (Child, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
        let mut child = self
            .ssh_cmd("alice", code, &[&format!("echo {line}; sleep 30")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssh");
        let stdout = crate::collect(&mut child);
        crate::wait_for(&stdout, line, 1, "the session's output");
        self.wait_status(code, "active", 10);
        (child, stdout)
    }

    /// An interactive bash of alice's under a terminal (`ssh -tt`, plus `args`: none for a
    /// login shell, or a command such as `bash -i` or `su -`), returned once bash drew its
    /// first prompt: the child, what it printed so far, and a way to type (each call writes,
    /// flushes and gives the far side 250 ms). Keys typed before a prompt is drawn are a known
    /// limit of reading commands from the screen (format's commands.rs,
    /// `limit_keys_typed_before_a_new_prompt_is_drawn`), so tests wait for each prompt as a
    /// person does: bash turns bracketed paste on (`PROMPT_READY`) just before it draws one.
    pub fn typing(
        &self,
        code: &str,
        args: &[&str],
    ) -> (Child, std::sync::Arc<std::sync::Mutex<Vec<u8>>>, impl FnMut(&str) + use<>) {
        let mut all = vec!["-tt"];
        all.extend_from_slice(args);
        let mut child = self
            .ssh_cmd("alice", code, &all)
            .env("TERM", "xterm")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssh starts");
        let out = crate::collect(&mut child);
        let mut input = child.stdin.take().expect("stdin");
        let send = move |s: &str| {
            use std::io::Write as _;
            input.write_all(s.as_bytes()).expect("type");
            input.flush().expect("flush");
            std::thread::sleep(Duration::from_millis(250));
        };
        crate::wait_for(&out, PROMPT_READY, 1, "the shell's first prompt");
        (child, out, send)
    }

    /// Options every client command uses: this key only, no host key prompts, no config.
    pub fn ssh_opts(&self, key_name: &str) -> Vec<String> {
        client_opts(&self.dir.path().join(key_name))
    }

    pub fn ssh(&self, user: &str, args: &[&str]) -> Output {
        self.ssh_cmd("alice", user, args).stdin(Stdio::null()).output().expect("ssh runs")
    }

    /// Waits until the request has `status` (the API view), or panics after `secs`.
    pub fn wait_status(&self, code: &str, status: &str, secs: u64) {
        test_util::wait_until(
            Duration::from_secs(secs),
            Duration::from_millis(50),
            || (self.status(code)["status"] == status).then_some(()),
            || {
                format!(
                    "{code} never became {status}: {}\n{}",
                    self.status(code),
                    self.server.log()
                )
            },
        );
    }

    /// The recording files (`.cast`) written so far.
    pub fn recordings(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.data_dir().join("recordings"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "cast"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The recording of grant `code`, once its signature is written.
    pub fn recording_of(&self, code: &str, secs: u64) -> PathBuf {
        test_util::wait_until(
            Duration::from_secs(secs),
            Duration::from_millis(50),
            || {
                self.recordings().into_iter().find(|p| {
                    p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(code))
                        && recorder_sig(p).exists()
                })
            },
            || format!("no signed recording for {code}:\n{}", self.server.log()),
        )
    }

    /// `breakglass ARGS` against this world's config, data directory and database (the
    /// environment `breakglass up` got, e.g. its PostgreSQL URL).
    pub fn cli(&self, args: &[&str]) -> crate::Output {
        let mut all: Vec<&str> = args.to_vec();
        let cfg = self.config.to_str().expect("utf-8").to_owned();
        let data = self.data_dir().to_str().expect("utf-8").to_owned();
        all.extend(["--config", &cfg, "--data-dir", &data]);
        let out = Command::new(bin())
            .args(&all)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("breakglass runs");
        crate::Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl World {
    /// `breakglass ARGS` as a client of this world's server, with `who`'s API token.
    pub fn cli_as(&self, who: &str, args: &[&str]) -> crate::Output {
        let out = Command::new(bin())
            .args(["--server", &self.server.url])
            .args(args)
            .env("BREAKGLASS_TOKEN", token(who))
            .env_remove("BREAKGLASS_CONFIG")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("breakglass runs");
        crate::Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Posts a form body to the bot, signed as Slack signs it; returns status and JSON.
    pub fn slack_post(&self, path: &str, body: &str) -> (u16, Value) {
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let resp = self
            .http
            .post(format!("{}{path}", self.server.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", crate::fake_slack::sign(SLACK_SECRET, ts, body))
            .body(body.to_owned())
            .send()
            .expect("bot answers");
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }

    /// `/breakglass TEXT` from alice in the incident channel, signed as Slack signs it: the
    /// request's card once `fake` (this world's Slack) got it.
    ///
    /// # Panics
    /// When the bot does not answer 200 with the code, or the card does not come.
    pub fn slack_request(&self, fake: &crate::fake_slack::FakeSlack, text: &str) -> SlackCard {
        let (s, v) = self.slack_post(
            "/slack/commands",
            &crate::fake_slack::command_body("U0ALICE", SLACK_CHANNEL, text),
        );
        assert_eq!(s, 200, "{v}");
        let answer = v["text"].as_str().unwrap_or_default().to_owned();
        let code = answer.split('`').nth(1).expect("the code in the answer").to_owned();
        let card = fake.wait_call("the card", |c| {
            c.method == "chat.postMessage"
                && c.text().contains(&code)
                && c.body["thread_ts"].is_null()
        });
        let ts = card.ts.clone().expect("card ts");
        let id = self.status(&code)["id"].as_str().expect("id").to_owned();
        SlackCard { code, ts, id }
    }

    /// A click of `action` (`breakglass_approve`, `_deny`, `_revoke`) on `card` by the Slack
    /// user `who`; returns the HTTP status.
    pub fn slack_click(&self, who: &str, card: &SlackCard, action: &str) -> u16 {
        let body = crate::fake_slack::click_body(who, SLACK_CHANNEL, &card.ts, action, &card.id);
        self.slack_post("/slack/interactions", &body).0
    }

    /// `sftp -b BATCH` as alice through the gateway on grant `code`.
    pub fn sftp(&self, code: &str, batch: &Path) -> Output {
        Command::new("sftp")
            .args(self.ssh_opts("alice"))
            .args(["-P", &self.gw_port.to_string(), "-b"])
            .arg(batch)
            .arg(format!("{code}@127.0.0.1"))
            .output()
            .expect("sftp runs")
    }

    /// Posts an interaction to the bot, signed as Discord signs it; returns status and JSON.
    pub fn discord_post(&self, body: &Value) -> (u16, Value) {
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let body = body.to_string();
        let (sig, ts) = crate::fake_discord::Signer::default().sign(ts, &body);
        let resp = self
            .http
            .post(format!("{}/discord/interactions", self.server.url))
            .header("content-type", "application/json")
            .header("x-signature-ed25519", sig)
            .header("x-signature-timestamp", ts)
            .body(body)
            .send()
            .expect("bot answers");
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }

    /// The session events the gateway stored for grant `code` (read from the database).
    pub fn session_events(&self, code: &str) -> Vec<shared::ports::SessionEvent> {
        let id: shared::core::RequestId =
            self.status(code)["id"].as_str().expect("id").parse().expect("uuid");
        let url = self.database_url.clone();
        block_on(async move {
            let store = shared::storage::connect(&url).await.expect("database opens");
            store.session_events(id).await.expect("events read")
        })
    }

    /// The commands of grant `code`'s session, in order.
    pub fn commands(&self, code: &str) -> Vec<String> {
        self.session_events(code)
            .into_iter()
            .filter(|e| e.kind == shared::core::SessionEventKind::Command)
            .filter_map(|e| e.detail["command"].as_str().map(str::to_owned))
            .collect()
    }

    /// Takes the PostgreSQL database away under the running gateway.
    pub fn lose_database(&self) {
        let admin = shared::testing::db::Admin {
            backend: shared::testing::db::Backend::Postgres,
            url: self.database_url.clone(),
        };
        block_on(admin.terminate_connections_and_block()).expect("connections ended");
    }

    /// Raw SQL on the world's database (as an administrator, or an attacker, could).
    pub fn sql(&self, sql: &str) -> Result<u64, String> {
        let backend = if self.database_url.starts_with("sqlite:") {
            shared::testing::db::Backend::Sqlite
        } else {
            shared::testing::db::Backend::Postgres
        };
        let admin = shared::testing::db::Admin { backend, url: self.database_url.clone() };
        block_on(admin.exec(sql)).map_err(|e| e.to_string())
    }
}

/// A request's card in Slack: its code, the card message's `ts`, the request id (which the
/// card's buttons carry).
#[derive(Debug, Clone)]
pub struct SlackCard {
    pub code: String,
    pub ts: String,
    pub id: String,
}

/// `<file>.sig`.
pub fn recorder_sig(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}
