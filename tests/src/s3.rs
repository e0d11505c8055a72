//! A real S3-compatible server for tests: moto's server (`pip install 'moto[server]'`,
//! scripts/test installs it), one per test on a port of its own, so a test can take it away
//! ([`Moto::kill`]) without touching another's.
//!
//! Std only, so the `breakglass-s3` crate's own tests include this file as it is
//! (`#[path]`) instead of depending on the end-to-end crate.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The access key moto accepts (it checks no signature); any value works.
pub const MOTO_KEY: &str = "testing";

/// A running moto server with one bucket. Killed on drop.
#[derive(Debug)]
pub struct Moto {
    child: Option<Child>,
    port: u16,
    pub bucket: String,
}

impl Moto {
    /// Starts moto on a free port (it picks it: `-p 0`) and creates `bucket`.
    ///
    /// # Panics
    /// moto is not installed or does not start: the message says how to install it.
    #[allow(clippy::expect_used)]
    pub fn start(bucket: &str) -> Self {
        let mut child = spawn_moto().expect(
            "moto's server does not start: install it with `python3 -m pip install 'moto[server]'` (scripts/test does)",
        );
        let stderr = child.stderr.take().expect("moto's stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && let Some(rest) = line.split("Running on http://127.0.0.1:").nth(1) {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = tx.send(port.parse::<u16>().unwrap_or(0));
                    sent = true;
                }
            }
        });
        let port = rx.recv_timeout(Duration::from_secs(30)).expect("moto printed its port");
        let moto = Self { child: Some(child), port, bucket: bucket.to_owned() };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match moto.request("PUT", &format!("/{bucket}")) {
                Ok(status) if status < 300 => break,
                r if Instant::now() > deadline => panic!("moto did not create the bucket: {r:?}"),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        moto
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Takes the server away (SIGKILL): the bucket stops answering at once.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The object `key` of the bucket as it is now (`None`: not there).
    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        let (status, body) = self.exchange("GET", &format!("/{}/{key}", self.bucket)).ok()?;
        (status == 200).then_some(body)
    }

    /// Every key in the bucket (up to 1000), sorted.
    pub fn keys(&self) -> Vec<String> {
        let Ok((_, body)) = self.exchange("GET", &format!("/{}?list-type=2", self.bucket)) else {
            return Vec::new();
        };
        let text = String::from_utf8_lossy(&body);
        let mut keys: Vec<String> = text
            .split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys
    }

    fn request(&self, method: &str, path: &str) -> std::io::Result<u16> {
        self.exchange(method, path).map(|(s, _)| s)
    }

    /// One HTTP/1.0 exchange, as a signed-in user (moto reads the key id, checks no
    /// signature; an anonymous read of an object is refused): the status and the body.
    fn exchange(&self, method: &str, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential={MOTO_KEY}/20260101/us-east-1/s3/aws4_request\r\n\r\n",
            self.port
        )?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").map_or(raw.len(), |i| i + 4);
        let head = String::from_utf8_lossy(&raw[..head_end]);
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        Ok((status, raw[head_end..].to_vec()))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_moto() -> std::io::Result<Child> {
    let start = |cmd: &mut Command| {
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn()
    };
    start(Command::new("moto_server").args(["-p", "0"]))
        .or_else(|_| start(Command::new("python3").args(["-m", "moto.server", "-p", "0"])))
}
