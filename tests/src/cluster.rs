//! A deployment with replicas, for the replica tests: one database (a fresh PostgreSQL one,
//! or a SQLite file), one OpenSSH target, and several `breakglass bot` and `breakglass
//! gateway` processes sharing it.
//!
//! Shared between the processes, as an operator shares them: the config file, the bot's
//! approval key (`keys.approval_signing_key_file`, pinned in `keys.pinned_bot_keys`, which is
//! all the gateways trust), one gateway CA key (`keys.gateway_ca_key_file`, which the target
//! trusts) and one recording key. Each process has its own data directory: a gateway's host
//! key, recordings and journal of used grants are its own.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use shared::testing::db::{Admin, Backend, PgDatabase};

use crate::gateway::{PROMPT_READY, SLACK_CHANNEL, SLACK_SECRET, Sshd, login, token};
use crate::{bin, block_on, cli};

/// What a cluster runs.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub bots: usize,
    pub gateways: usize,
    /// `gateway.revocation_poll` of every gateway (`"1h"`: only the change feed cuts fast).
    pub revocation_poll: String,
    /// A SQLite file instead of a fresh PostgreSQL database.
    pub sqlite: bool,
    /// Slack's Web API (a [`crate::fake_slack::FakeSlack`]) for every bot, with the signing
    /// secret [`SLACK_SECRET`]. Bot `i` posts with the token `xoxb-bot-{i}`, so a test can
    /// tell which replica made a call.
    pub slack_api: Option<String>,
    /// Discord's REST API base (a [`crate::fake_discord::FakeDiscord`]) for every bot, with
    /// the test application's key. Bot `i` calls with the token `discord-bot-{i}`.
    pub discord_api: Option<String>,
    /// A database of the test's own (e.g. a [`crate::throwaway_pg::ThrowawayPg`]) instead of
    /// a fresh one on the shared server.
    pub database_url: Option<String>,
    /// Extra lines for `[scopes.prod]` (e.g. `max_duration = "5s"`).
    pub scope_extra: String,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            bots: 2,
            gateways: 2,
            revocation_poll: "250ms".into(),
            sqlite: false,
            slack_api: None,
            discord_api: None,
            database_url: None,
            scope_extra: String::new(),
        }
    }
}

/// One `breakglass bot` or `breakglass gateway` process.
#[derive(Debug)]
pub struct Replica {
    /// `bot` or `gateway`.
    pub mode: &'static str,
    /// Where it listens: the bot's `http://HOST:PORT`, the gateway's `HOST:PORT`.
    pub addr: String,
    pub data_dir: PathBuf,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
}

/// The line each mode says where it listens on, before the address.
fn ready_marker(mode: &str) -> &'static str {
    if mode == "bot" { "HTTP API on " } else { "SSH gateway on " }
}

impl Replica {
    /// Spawns `breakglass MODE --config CONFIG --data-dir DATA --listen 127.0.0.1:0` with
    /// `env`; [`Replica::wait_ready`] waits until it listens.
    fn spawn(mode: &'static str, config: &Path, data: &Path, env: &[(String, String)]) -> Self {
        let mut c = Command::new(bin());
        c.arg(mode)
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            // Several gateways on one machine: each its own health port.
            .args(if mode == "gateway" { &["--health-listen", "127.0.0.1:0"][..] } else { &[] })
            .env_remove("BREAKGLASS_CONFIG")
            .env("BREAKGLASS_LOG", "info,sqlx=warn,shared::storage=debug")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("breakglass starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = sink.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        Self { mode, addr: String::new(), data_dir: data.to_owned(), child: Some(child), log }
    }

    /// Waits up to 60 s until it says where it listens.
    ///
    /// # Panics
    /// When it exits first or never listens, with its log.
    fn wait_ready(&mut self) {
        let marker = ready_marker(self.mode);
        let child = self.child.as_mut().expect("running");
        let log = self.log.clone();
        let got = test_util::poll(Duration::from_secs(60), Duration::from_millis(50), || {
            let text = log.lock().map(|l| l.clone()).unwrap_or_default();
            if let Some(rest) = text.split(marker).nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                return Some(Ok(addr.trim_end_matches(';').to_owned()));
            }
            child.try_wait().ok().flatten().map(Err)
        });
        match got {
            Some(Ok(addr)) => self.addr = addr,
            other => {
                std::thread::sleep(Duration::from_millis(200));
                panic!("breakglass {} did not start ({other:?}):\n{}", self.mode, self.log());
            }
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The gateway's SSH port.
    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port")
    }

    /// SIGKILL: a crash, nothing gets to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-KILL", &c.id().to_string()]).status();
            let _ = c.wait();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The database, the target, the replicas.
#[derive(Debug)]
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub sshd: Sshd,
    pub bots: Vec<Replica>,
    pub gateways: Vec<Replica>,
    pub login: String,
    pub config: PathBuf,
    pub database_url: String,
    env: Vec<(String, String)>,
    pg: Option<PgDatabase>,
    http: reqwest::blocking::Client,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.bots.clear();
        self.gateways.clear();
        if let Some(pg) = self.pg.take() {
            block_on(pg.remove());
        }
    }
}

/// The public line of a key pair `breakglass keygen` wrote (`BASE.pub`).
fn public_line(base: &Path) -> String {
    std::fs::read_to_string(base.with_extension("pub")).expect("BASE.pub").trim().to_owned()
}

impl Cluster {
    /// Writes the shared keys and config, starts the target, then every replica at once, and
    /// waits until all of them listen.
    ///
    /// # Panics
    /// On any setup failure, with the logs.
    pub fn start(opts: ClusterOptions) -> Self {
        let mut cluster = Self::prepare(&opts);
        for i in 0..opts.bots {
            let data = cluster.dir.path().join(format!("bot-{i}"));
            let mut env = cluster.env.clone();
            if opts.slack_api.is_some() {
                env.push(("BREAKGLASS_SLACK_BOT_TOKEN".to_owned(), format!("xoxb-bot-{i}")));
            }
            if opts.discord_api.is_some() {
                env.push(("BREAKGLASS_DISCORD_BOT_TOKEN".to_owned(), format!("discord-bot-{i}")));
            }
            cluster.bots.push(Replica::spawn("bot", &cluster.config, &data, &env));
        }
        for i in 0..opts.gateways {
            let data = cluster.dir.path().join(format!("gateway-{i}"));
            cluster.gateways.push(Replica::spawn("gateway", &cluster.config, &data, &cluster.env));
        }
        for r in cluster.bots.iter_mut().chain(cluster.gateways.iter_mut()) {
            r.wait_ready();
        }
        cluster
    }

    /// The database, keys, target and config, with no process started yet.
    ///
    /// # Panics
    /// On any setup failure.
    pub fn prepare(opts: &ClusterOptions) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let (pg, database_url) = if let Some(url) = &opts.database_url {
            (None, url.clone())
        } else if opts.sqlite {
            (None, format!("sqlite://{}", d.join("shared").join("breakglass.db").display()))
        } else {
            let pg = block_on(PgDatabase::create());
            let url = pg.url.clone();
            (Some(pg), url)
        };
        let mut env = vec![("BREAKGLASS__SERVER__DATABASE_URL".to_owned(), database_url.clone())];
        let slack = match &opts.slack_api {
            Some(url) => {
                env.push(("BREAKGLASS_SLACK_SIGNING_SECRET".to_owned(), SLACK_SECRET.to_owned()));
                format!("[slack]\napi_url = \"{url}\"\n")
            }
            None => String::new(),
        };
        let discord = match &opts.discord_api {
            Some(url) => format!(
                "[discord]\napi_base = \"{url}\"\napplication_id = {}\npublic_key = \"{}\"\n",
                crate::fake_discord::APP_ID,
                crate::fake_discord::Signer::default().public_key_hex()
            ),
            None => String::new(),
        };
        // The shared keys: the CA and the recording key (generated by the first command that
        // needs them, under a data directory of their own) and the bot's approval key.
        let keys = d.join("shared").join("keys");
        let ca = cli(
            &["ca", "public-key", "--data-dir", d.join("shared").to_str().expect("utf-8")],
            &[],
        );
        assert_eq!(ca.code, 0, "{}", ca.all());
        let out = cli(&["keygen", "--out", keys.join("approval").to_str().expect("utf-8")], &[]);
        assert_eq!(out.code, 0, "{}", out.all());
        let sshd = Sshd::start(&d.join("sshd"), ca.stdout.trim());
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "alice", "-f"])
            .arg(d.join("alice"))
            .status()
            .expect("ssh-keygen");
        assert!(status.success());
        let known_hosts = d.join("known_hosts");
        std::fs::write(&known_hosts, format!("{}\n", sshd.known_hosts_line()))
            .expect("known_hosts");
        let login = login();
        let alice = std::fs::read_to_string(d.join("alice.pub")).expect("alice.pub");
        let config = format!(
            r#"
[gateway]
known_hosts_file = "{kh}"
connect_timeout = "5s"
revocation_poll = "{poll}"

[keys]
approval_signing_key_file = "{approval}"
gateway_ca_key_file = "{ca}"
recording_signing_key_file = "{recording}"
pinned_bot_keys = ["{approval_pub}"]
pinned_recording_keys = ["{recording_pub}"]

{slack}
{discord}
{users}
[scopes.prod]
hosts = {{ db-1 = "127.0.0.1:{port}" }}
logins = ["{login}"]
requester_groups = ["oncall"]
approver_groups = ["dba"]
quorum = 2
channels = ["{channel}", "{discord_channel}"]
{scope_extra}
"#,
            kh = known_hosts.display(),
            poll = opts.revocation_poll,
            approval = keys.join("approval.key").display(),
            ca = keys.join("ca.key").display(),
            recording = keys.join("recording.key").display(),
            approval_pub = public_line(&keys.join("approval")),
            recording_pub = public_line(&keys.join("recording")),
            users = test_util::world::users_toml(&[(
                "alice",
                format!("ssh_keys = [\"{}\"]", alice.trim())
            )]),
            port = sshd.port,
            channel = SLACK_CHANNEL,
            discord_channel = crate::gateway::DISCORD_CHANNEL,
            scope_extra = opts.scope_extra,
        );
        let config_path = d.join("breakglass.toml");
        std::fs::write(&config_path, config).expect("config");
        Self {
            dir,
            sshd,
            bots: Vec::new(),
            gateways: Vec::new(),
            login,
            config: config_path,
            database_url,
            env,
            pg,
            http: reqwest::blocking::Client::new(),
        }
    }

    /// Starts gateway `i` again on its own data directory (after [`Replica::kill9`]).
    ///
    /// # Panics
    /// When it does not start.
    pub fn restart_gateway(&mut self, i: usize) {
        let data = self.gateways[i].data_dir.clone();
        self.gateways[i].kill9();
        let mut r = Replica::spawn("gateway", &self.config, &data, &self.env);
        r.wait_ready();
        self.gateways[i] = r;
    }

    /// A JSON call to bot `bot`'s API as `who`.
    pub fn api(
        &self,
        bot: usize,
        who: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.bots[bot].addr);
        crate::api_call(&self.http, &url, &token(who), method, body)
    }

    /// Posts a form body to bot `bot`, signed as Slack signs it at `ts` (a resend of the same
    /// delivery is the same `ts` and body); returns status and JSON.
    pub fn slack_post(&self, bot: usize, path: &str, body: &str, ts: i64) -> (u16, Value) {
        slack_post_to(&self.http, &self.bots[bot].addr, path, body, ts)
    }

    /// `/breakglass request db-1 …` from alice in the incident channel through bot `bot`: the
    /// request's code.
    pub fn slack_request(&self, bot: usize) -> String {
        let text = format!("request db-1 --as {} --for 30m replica chat test", self.login);
        let body = crate::fake_slack::command_body("U0ALICE", SLACK_CHANNEL, &text);
        let (s, v) = self.slack_post(bot, "/slack/commands", &body, crate::unix_now());
        assert_eq!(s, 200, "{v}");
        let answer = v["text"].as_str().unwrap_or_default().to_owned();
        answer.split('`').nth(1).expect("the code in the answer").to_owned()
    }

    /// Posts an interaction to bot `bot`, signed as Discord signs it; returns status and JSON.
    pub fn discord_post(&self, bot: usize, body: &Value) -> (u16, Value) {
        let body = body.to_string();
        let (sig, ts) = crate::fake_discord::Signer::default().sign(crate::unix_now(), &body);
        let resp = self
            .http
            .post(format!("{}/discord/interactions", self.bots[bot].addr))
            .header("content-type", "application/json")
            .header("x-signature-ed25519", sig)
            .header("x-signature-timestamp", ts)
            .body(body)
            .send()
            .expect("bot answers");
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }

    /// alice asks for db-1 through bot `bot`; the request's code.
    pub fn request(&self, bot: usize) -> String {
        let body = json!({ "host": "db-1", "login": self.login, "reason": "replica test" });
        let (s, v) = self.api(bot, "alice", "POST", "/api/v1/requests", Some(body));
        assert_eq!(s, 201, "{v}");
        v["code"].as_str().expect("code").to_owned()
    }

    /// `verb` (approve, revoke, …) on `code` by `who` through bot `bot`.
    pub fn act(&self, bot: usize, code: &str, verb: &str, who: &str) -> Value {
        let (s, v) = self.api(bot, who, "POST", &format!("/api/v1/requests/{code}/{verb}"), None);
        assert_eq!(s, 200, "{verb} by {who}: {v}");
        v
    }

    /// Requested through bot 0, approved by bob and carol through bot 1: the code.
    pub fn grant(&self) -> String {
        let code = self.request(0);
        let last = self.bots.len() - 1;
        self.act(last, &code, "approve", "bob");
        self.act(last, &code, "approve", "carol");
        code
    }

    pub fn status(&self, code: &str) -> Value {
        self.api(0, "alice", "GET", &format!("/api/v1/requests/{code}"), None).1
    }

    /// Waits until the request has `status`, or panics after `secs`.
    pub fn wait_status(&self, code: &str, status: &str, secs: u64) {
        test_util::wait_until(
            Duration::from_secs(secs),
            Duration::from_millis(50),
            || (self.status(code)["status"] == status).then_some(()),
            || format!("{code} never became {status}: {}\n{}", self.status(code), self.logs()),
        );
    }

    /// Every replica's log, headed by its name.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for (i, r) in self.bots.iter().enumerate() {
            all.push_str(&format!("--- bot {i}\n{}", r.log()));
        }
        for (i, r) in self.gateways.iter().enumerate() {
            all.push_str(&format!("--- gateway {i}\n{}", r.log()));
        }
        all
    }

    /// `ssh` as alice through gateway `gw` on grant `code`; `args` follow.
    pub fn ssh_cmd(&self, gw: usize, code: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ssh");
        c.args(crate::gateway::client_opts(&self.dir.path().join("alice")))
            .args(["-p", &self.gateways[gw].port().to_string()])
            .arg(format!("{code}@127.0.0.1"))
            .args(args);
        c
    }

    /// An interactive shell of alice's under a terminal through gateway `gw`, once its first
    /// prompt is drawn and the grant is `active`: the child, what it printed, and its stdin.
    pub fn shell(&self, gw: usize, code: &str) -> (Child, Arc<Mutex<Vec<u8>>>, ChildStdin) {
        let mut child = self
            .ssh_cmd(gw, code, &["-tt"])
            .env("TERM", "xterm")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssh starts");
        let out = crate::collect(&mut child);
        let stdin = child.stdin.take().expect("stdin");
        crate::wait_for(&out, PROMPT_READY, 1, "the shell's first prompt");
        self.wait_status(code, "active", 10);
        (child, out, stdin)
    }

    /// The database, as its administrator reaches it.
    pub fn admin(&self) -> Admin {
        let backend = if self.database_url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        Admin { backend, url: self.database_url.clone() }
    }

    /// The first column of `sql`'s rows, as integers.
    pub fn numbers(&self, sql: &str) -> Vec<i64> {
        block_on(self.admin().numbers(sql)).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// `breakglass ARGS --config CONFIG --data-dir DATA` with the cluster's database.
    pub fn cli(&self, data: &Path, args: &[&str]) -> crate::Output {
        let out = Command::new(bin())
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(data)
            .env_remove("BREAKGLASS_CONFIG")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .output()
            .expect("breakglass runs");
        crate::Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Posts a form body to the bot at `addr` (`http://HOST:PORT`), signed as Slack signs it at
/// `ts`; returns status and JSON. Usable from another thread than the cluster's.
pub fn slack_post_to(
    http: &reqwest::blocking::Client,
    addr: &str,
    path: &str,
    body: &str,
    ts: i64,
) -> (u16, Value) {
    let resp = http
        .post(format!("{addr}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", crate::fake_slack::sign(SLACK_SECRET, ts, body))
        .body(body.to_owned())
        .send();
    match resp {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().unwrap_or(Value::Null))
        }
        // The bot died before answering.
        Err(_) => (0, Value::Null),
    }
}

/// Types `line` and Enter into a shell's stdin; false once the client is gone.
pub fn type_line(stdin: &mut ChildStdin, line: &str) -> bool {
    stdin.write_all(format!("{line}\n").as_bytes()).and_then(|()| stdin.flush()).is_ok()
}
