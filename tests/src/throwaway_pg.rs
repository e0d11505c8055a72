//! A PostgreSQL cluster of a test's own (`initdb` + `pg_ctl` on a free port in a temp dir),
//! for the tests that stop the database under running replicas: the shared server at
//! 127.0.0.1:5432 must never be stopped. As root, PostgreSQL's tools run as the `postgres`
//! account (`runuser`), as `scripts/test` does for its throwaway cluster.

use std::path::PathBuf;
use std::process::Command;

/// A running (or stopped) throwaway cluster; `Drop` stops it at once and removes it.
#[derive(Debug)]
pub struct ThrowawayPg {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    port: u16,
    /// `postgres://postgres@127.0.0.1:PORT/test`.
    pub url: String,
}

/// The newest installed PostgreSQL's `bin` directory.
fn bindir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql")
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().expect("an initdb")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

impl ThrowawayPg {
    /// initdb, start, `createdb test`.
    ///
    /// # Panics
    /// On any failure, with the tool's output.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        if is_root() {
            let ok = Command::new("chown").arg("postgres").arg(dir.path()).status();
            assert!(ok.is_ok_and(|s| s.success()), "chown postgres");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let pg = Self {
            bindir: bindir(),
            port,
            url: format!("postgres://postgres@127.0.0.1:{port}/test"),
            dir,
        };
        let data = pg.data();
        pg.run("initdb", &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8"]);
        pg.start_again();
        let port = port.to_string();
        pg.run("createdb", &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "test"]);
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Runs one of PostgreSQL's tools (as `postgres` when root).
    fn run(&self, tool: &str, args: &[&str]) {
        let bin = self.bindir.join(tool);
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&bin);
            c
        } else {
            Command::new(&bin)
        };
        let out = c.args(args).output().expect("a PostgreSQL tool runs");
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn start_again(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.run("pg_ctl", &["-D", &self.data(), "-l", &log, "-w", "-o", &opts, "start"]);
    }

    /// Stops the server at once (`-m immediate`: no checkpoint, every connection cut).
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }
}

impl Drop for ThrowawayPg {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bindir.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
    }
}
