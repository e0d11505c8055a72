//! Recording upload lag: how long after the gateway writes a byte it is readable from the
//! bucket. Starts its own moto server (`tests/src/s3.rs`), writes one line every 100 ms (the
//! gateway's flush interval) through an `S3Store` for `SECONDS` (default 30), while a second
//! store (another replica, the live view; no spool) polls the bucket every 20 ms; prints the
//! lag of every line as p50, p95 and max, for `upload_every` 2 s (the default) and 500 ms.
//!
//! `cargo run -p breakglass-s3 --example upload_lag -- [SECONDS]` (BENCHMARKS.md).

#[path = "../../tests/src/s3.rs"]
#[allow(dead_code, unreachable_pub, clippy::expect_used)]
mod moto;

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use format::store::RecordingStore as _;
use s3::{S3Options, S3Store};
use shared::config::Secret;

#[allow(clippy::expect_used)]
fn main() {
    let seconds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(30);
    for every in [Duration::from_secs(2), Duration::from_millis(500)] {
        let m = moto::Moto::start("lag");
        let (spool, other) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let opts = |dir: &std::path::Path| S3Options {
            bucket: m.bucket.clone(),
            prefix: "recordings".into(),
            endpoint: Some(m.endpoint()),
            region: "us-east-1".into(),
            allow_http: true,
            access_key_id: Some(Secret::new(moto::MOTO_KEY.into())),
            secret_access_key: Some(Secret::new(moto::MOTO_KEY.into())),
            session_token: None,
            spool_dir: dir.to_path_buf(),
            spool_max: 256 << 20,
            upload_every: every,
            upload_timeout: Duration::from_secs(10),
        };
        let writer = S3Store::open(&opts(spool.path())).expect("store");
        let reader = S3Store::open(&opts(other.path())).expect("store");
        let name = "bg-000001-1795403640-00000001.cast";
        let mut w = writer.create(name).expect("create");
        let start = Instant::now();
        let total = usize::try_from(seconds * 10).unwrap_or(300);
        let mut written: Vec<Instant> = Vec::with_capacity(total);
        let mut seen: Vec<Option<Duration>> = vec![None; total];
        let (mut next_write, mut have) = (start, 0u64);
        while seen.iter().any(Option::is_none)
            && start.elapsed() < Duration::from_secs(seconds + 30)
        {
            if written.len() < total && Instant::now() >= next_write {
                w.write_all(
                    format!(
                        "[{:.3},\"o\",\"line {:06}\"]\n",
                        start.elapsed().as_secs_f64(),
                        written.len()
                    )
                    .as_bytes(),
                )
                .expect("write");
                written.push(Instant::now());
                next_write += Duration::from_millis(100);
            }
            let mut tail = Vec::new();
            if let Ok(mut r) = reader.read_from(name, have) {
                let _ = r.read_to_end(&mut tail);
            }
            have += tail.len() as u64;
            let now = Instant::now();
            for line in String::from_utf8_lossy(&tail).lines() {
                if let Some(n) = line
                    .split("line ")
                    .nth(1)
                    .and_then(|s| s.trim_end_matches("\"]").parse::<usize>().ok())
                    && n < total
                    && let Some(at) = written.get(n)
                {
                    seen[n] = Some(now - *at);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut lags: Vec<Duration> = seen.into_iter().flatten().collect();
        lags.sort();
        let pick = |q: f64| {
            lags.get(((lags.len() as f64 - 1.0) * q) as usize).copied().unwrap_or_default()
        };
        println!(
            "upload_every {every:?}: {} lines over {seconds} s, lag p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
            lags.len(),
            pick(0.5).as_secs_f64() * 1e3,
            pick(0.95).as_secs_f64() * 1e3,
            pick(1.0).as_secs_f64() * 1e3,
        );
        drop(w);
    }
}
