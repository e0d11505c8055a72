//! Test helpers shared by every test suite in the workspace: the unit tests inside `format`,
//! `recorder` and `bot`, the integration tests of `shared` and `bot`, and the end-to-end
//! crate (`tests/`).
//!
//! Why a crate of its own rather than the end-to-end library (`breakglass-e2e`): that library
//! depends on `recorder` (and brings reqwest, axum and a WebSocket client), so `recorder`'s own
//! tests could use it only through a second copy of the crate under test, and every suite
//! would build all of it. This crate depends only on `shared`, for the types the test world is
//! made of. `shared`'s integration tests take it through a dev-dependency cycle that Cargo
//! allows and that is harmless there (they link the one `shared` library this crate links);
//! `shared`'s unit tests inside `src/` cannot use it, and do not need to. It is a
//! dev-dependency everywhere (the end-to-end library, itself test-only, is the one crate that
//! takes it as a normal dependency).
//!
//! - [`world`]: the test world (users, scopes, keys, tokens) written once.
//! - [`poll`] (with [`eventually`] and [`wait_until`] over it) and [`poll_async`] (with
//!   [`wait_until_async`]): the one polling loop (look, sleep, give up after a while).
//! - [`Rng`]: the one deterministic generator for tests that mix inputs.
//! - [`both_backends!`]: a test body declared once, run on SQLite and on PostgreSQL.

pub mod world;

use std::future::Future;
use std::time::Duration;

/// Calls `ready` every `every` until it gives `Some` (returned), or `within` has passed
/// (`None`). `ready` is called at least once, and once more at the deadline.
pub fn poll<T>(
    within: Duration,
    every: Duration,
    mut ready: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(v) = ready() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// [`poll`] for a condition: whether `done` became true within `within`.
pub fn eventually(within: Duration, every: Duration, mut done: impl FnMut() -> bool) -> bool {
    poll(within, every, || done().then_some(())).is_some()
}

/// [`poll`] that must succeed.
///
/// # Panics
/// When `within` passes first, with the message `failure` makes then (so it can show what
/// was there at the end).
#[track_caller]
pub fn wait_until<T>(
    within: Duration,
    every: Duration,
    ready: impl FnMut() -> Option<T>,
    failure: impl FnOnce() -> String,
) -> T {
    match poll(within, every, ready) {
        Some(v) => v,
        None => panic!("{}", failure()),
    }
}

/// [`poll`] for async tests, sleeping on tokio's clock (so a paused clock moves it).
pub async fn poll_async<T, F, Fut>(within: Duration, every: Duration, mut ready: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = ready().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// [`wait_until`] for async tests.
///
/// # Panics
/// As [`wait_until`].
pub async fn wait_until_async<T, F, Fut>(
    within: Duration,
    every: Duration,
    ready: F,
    failure: impl FnOnce() -> String,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match poll_async(within, every, ready).await {
        Some(v) => v,
        None => panic!("{}", failure()),
    }
}

/// A small deterministic generator (Marsaglia's xorshift64, shifts 13, 7, 17), so a test that
/// mixes inputs sees the same ones on every run and a failure reproduces. Not for anything
/// that needs real randomness.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// The seed most tests start from (the golden ratio's 64-bit fraction).
    pub const SEED: u64 = 0x9E37_79B9_7F4A_7C15;

    /// A generator starting at `seed` (xorshift stays at zero forever, so zero means
    /// [`Rng::SEED`]).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 { Self::SEED } else { seed })
    }

    /// The next 64 bits (the generator's whole state).
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        let n = u64::try_from(n.max(1)).unwrap_or(u64::MAX);
        usize::try_from(self.next_u64() % n).unwrap_or(0)
    }

    /// `n` bytes, eight from each step.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(n);
        out
    }

    /// `bytes` split into pieces of 1 to `max` bytes, in order.
    pub fn chunks<'a>(&mut self, bytes: &'a [u8], max: usize) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = (1 + self.below(max)).min(rest.len());
            let (chunk, tail) = rest.split_at(n);
            out.push(chunk);
            rest = tail;
        }
        out
    }
}

/// Declares each named test body once per database backend: for `both_backends!(name, …)`
/// next to `async fn name(db: TestDb) -> TestResult`, the tests `name::sqlite` and
/// `name::postgres`, each on a fresh database (`shared::testing::db::run`: PostgreSQL from
/// `BREAKGLASS_TEST_PG_URL` or the local server).
///
/// The names inside resolve where the macro is used, so the calling crate needs `shared`
/// (with its `test-util` feature) and `tokio`, as every database test does anyway.
#[macro_export]
macro_rules! both_backends {
    ($($test:ident),+ $(,)?) => {
        $(
            mod $test {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    ::shared::testing::db::run(::shared::testing::db::Backend::Sqlite, super::$test)
                        .await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    ::shared::testing::db::run(::shared::testing::db::Backend::Postgres, super::$test)
                        .await;
                }
            }
        )+
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_repeats_itself_and_stays_in_bounds() {
        let run = |seed| {
            let mut r = Rng::new(seed);
            (0..100).map(|_| r.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        assert_eq!(run(0), run(Rng::SEED), "zero, which xorshift cannot leave, means SEED");
        let mut r = Rng::new(42);
        assert!((0..1000).all(|_| r.below(10) < 10));
        assert_eq!(r.below(0), 0);
        assert_eq!(r.bytes(13).len(), 13);
        let input: Vec<u8> = (0..=255).collect();
        let chunks = r.chunks(&input, 7);
        assert!(chunks.iter().all(|c| (1..=7).contains(&c.len())), "{chunks:?}");
        assert_eq!(chunks.concat(), input);
    }

    #[test]
    fn polling_returns_what_became_ready_or_gives_up_with_the_failure() {
        let mut n = 0;
        let got = poll(Duration::from_secs(5), Duration::from_millis(1), || {
            n += 1;
            (n == 3).then_some(n)
        });
        assert_eq!(got, Some(3));
        let started = std::time::Instant::now();
        let never: Option<()> = poll(Duration::from_millis(30), Duration::from_millis(5), || None);
        assert_eq!(never, None);
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!(eventually(Duration::from_secs(5), Duration::from_millis(1), || true));
        assert!(!eventually(Duration::ZERO, Duration::ZERO, || false));
        let failed = std::panic::catch_unwind(|| {
            wait_until(Duration::ZERO, Duration::ZERO, || None::<()>, || "nothing came".to_owned())
        });
        let message = failed.expect_err("it gives up").downcast::<String>().expect("a message");
        assert_eq!(*message, "nothing came");
    }

    #[tokio::test(start_paused = true)]
    async fn async_polling_runs_on_tokios_clock() {
        let started = tokio::time::Instant::now();
        let mut n = 0;
        let got = wait_until_async(
            Duration::from_secs(60),
            Duration::from_secs(10),
            || {
                n += 1;
                std::future::ready((n == 4).then_some(n))
            },
            || "never".to_owned(),
        )
        .await;
        assert_eq!(got, 4);
        assert_eq!(started.elapsed(), Duration::from_secs(30), "three sleeps of the paused clock");
        let none: Option<()> =
            poll_async(Duration::from_secs(5), Duration::from_secs(1), || std::future::ready(None))
                .await;
        assert_eq!(none, None);
    }
}
