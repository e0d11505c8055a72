//! End-to-end harness: the real `breakglass` binary as a child process, on real sockets, over a
//! real database (SQLite in a temporary directory, or a fresh PostgreSQL database).
//!
//! - [`bin`] finds the binary Cargo built next to the test executables.
//! - [`Server::start`] runs `breakglass up` on `127.0.0.1:0` and reads the bound address from
//!   its first lines; dropping it kills the process.
//! - [`cli`] runs one CLI command and captures its exit code and output.
//! - [`cluster::Cluster`]: several `breakglass bot` and `breakglass gateway` replicas on one
//!   database.

pub mod cluster;
pub mod fake_discord;
pub mod fake_slack;
pub mod gateway;
pub mod s3;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The workspace root (where `deploy/` lives).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The `breakglass` binary of this build (`target/<profile>/breakglass`).
///
/// # Panics
/// When it was not built: run the tests with `--workspace` (as `scripts/test` does).
pub fn bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
    let b = profile_dir.join("breakglass");
    assert!(b.exists(), "{} is missing: run the tests with `cargo test --workspace`", b.display());
    b
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout and stderr together, for assertions and failure messages.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `breakglass ARGS` in the workspace root (so `deploy/...` paths resolve) with `env`,
/// and waits for it.
pub fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin());
    c.args(args).current_dir(root()).env_remove("BREAKGLASS_TOKEN").env_remove("BREAKGLASS_CONFIG");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("breakglass runs");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A running `breakglass up`.
#[derive(Debug)]
pub struct Server {
    pub url: String,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `breakglass up ARGS --listen 127.0.0.1:0` (and an ephemeral SSH port unless ARGS
    /// name one) in `cwd` with `env`, and waits until it says where it listens.
    ///
    /// # Panics
    /// When it exits or does not listen within 60 s (the message has its output).
    pub fn start(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_under(&[], cwd, args, env)
    }

    /// [`Server::start`] run by `wrapper` (a program and its arguments, such as
    /// `["prlimit", "--nofile=256:"]`), which gets the binary's path and arguments after its own.
    ///
    /// # Panics
    /// As [`Server::start`].
    pub fn start_under(wrapper: &[&str], cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut c = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        c.arg("up").args(args).args(["--listen", "127.0.0.1:0"]).current_dir(cwd);
        if !args.contains(&"--ssh-listen") {
            // Parallel tests must not fight over the default 127.0.0.1:2222.
            c.args(["--ssh-listen", "127.0.0.1:0"]);
        }
        c.env_remove("BREAKGLASS_CONFIG").env("BREAKGLASS_LOG", "info,sqlx=warn");
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child =
            c.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("breakglass up starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("HTTP API on ").nth(1) {
                    let url = rest.split_whitespace().next().unwrap_or_default().to_owned();
                    let _ = tx.send(url);
                }
                if let Ok(mut l) = sink.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        // The address, or the exit status of a server that stopped first.
        let started = test_util::poll(Duration::from_secs(60), Duration::from_millis(50), || {
            match rx.try_recv() {
                Ok(url) => Some(Ok(url)),
                Err(_) => child.try_wait().ok().flatten().map(Err),
            }
        });
        let exited = match started {
            Some(Ok(url)) => return Self { url, child: Some(child), log },
            Some(Err(status)) => Some(status),
            None => None,
        };
        std::thread::sleep(Duration::from_millis(200));
        let _ = child.kill();
        panic!(
            "breakglass up did not start ({exited:?}):\n{}",
            log.lock().map(|l| l.clone()).unwrap_or_default()
        );
    }

    /// The process id of `breakglass up` (to read its memory use in /proc).
    ///
    /// # Panics
    /// After the process was killed or stopped.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("the server is running")
    }

    /// Everything it wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Kills the process with SIGKILL (a crash: nothing gets to clean up).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-KILL", &c.id().to_string()]).status();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit code (graceful shutdown).
    pub fn stop(mut self) -> Option<i32> {
        self.terminate()
    }

    /// [`Server::stop`] in place (for a harness that starts the server again on the same
    /// ports); `None` once it was stopped or killed.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let exited = test_util::poll(Duration::from_secs(20), Duration::from_millis(50), || {
            child.try_wait().ok().flatten()
        });
        if exited.is_none() {
            let _ = child.kill();
        }
        exited.and_then(|status| status.code())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A runtime for what a blocking test serves in the background (the fake Slack and Discord
/// APIs): one worker thread, so they answer while the test blocks.
///
/// # Panics
/// When the runtime cannot start.
pub fn background_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs `f` to completion on a runtime of its own (async helpers from a blocking test).
///
/// # Panics
/// When the runtime cannot start.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
}

/// Reads a child's stdout on a thread into a shared buffer.
///
/// # Panics
/// When stdout was not piped.
pub fn collect(child: &mut Child) -> Arc<Mutex<Vec<u8>>> {
    use std::io::Read as _;
    let buf = Arc::new(Mutex::new(Vec::new()));
    let mut out = child.stdout.take().expect("piped stdout");
    let sink = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = out.read(&mut chunk) {
            if n == 0 {
                break;
            }
            if let Ok(mut b) = sink.lock() {
                b.extend_from_slice(&chunk[..n]);
            }
        }
    });
    buf
}

/// Waits up to 15 s until `needle` appeared `times` times in `buf`.
///
/// # Panics
/// When it does not, with what was seen.
pub fn wait_for(buf: &Arc<Mutex<Vec<u8>>>, needle: &str, times: usize, what: &str) {
    let seen = || buf.lock().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    test_util::wait_until(
        Duration::from_secs(15),
        Duration::from_millis(30),
        || (seen().matches(needle).count() >= times).then_some(()),
        || format!("{what}: `{needle}` x{times} never appeared in:\n{:?}", seen()),
    );
}
