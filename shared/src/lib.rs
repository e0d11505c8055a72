//! Shared ground for every breakglass component.
//!
//! # Layout
//!
//! - [`core`]: pure domain: ids, policy, the request state machine, signed approvals, the
//!   audit hash chain, the gateway's grant verification. No I/O.
//! - [`keys`]: reading and writing Ed25519 key files (PKCS#8 PEM, `ed25519:` public lines).
//! - [`config`]: the one typed config, loaded in layers, with redacted secrets.
//! - [`fuzzing`]: the bodies of the approval and config fuzz targets (`fuzz/`).
//! - [`ports`]: the storage port (`Store`) that adapters implement.
//! - [`storage`]: the sqlx adapter for SQLite and PostgreSQL (feature `storage`).
//! - [`telemetry`]: the Prometheus metric names every process exports, and their help.
//! - [`testing`]: builders and fakes for tests (feature `test-util`).

pub mod config;
pub mod core;
pub mod fuzzing;
pub mod keys;
#[cfg(feature = "storage")]
pub mod ports;
#[cfg(feature = "storage")]
pub mod storage;
pub mod telemetry;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
