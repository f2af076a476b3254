//! Shared set-up for the tests of this workspace, and for nothing else: it is a
//! dev-dependency of the workspace's crates, never published, and its API changes with
//! their tests.
//!
//! - [`emulator()`] and [`two_keys()`]: the in-process emulator knowing [`KEY`] (and
//!   [`BACKUP`]);
//! - `builder()` and `client()` (feature `client`): an `EvolutionInference` for it;
//! - [`Capture`]: everything a `tracing` subscriber at TRACE writes, for the secrets audits;
//! - [`transport()`]: reqwest as a `Service<Request<Bytes>>`, for one layer's tests;
//! - [`RedisServer`] and [`redis()`]: a real redis-server for the shared cache's and the
//!   shared rate limits' tests.
//!
//! Each test binary used to carry its own copy of these; one copy keeps them from drifting
//! apart (a key set up in one way here, another there).

mod capture;
#[cfg(feature = "client")]
mod client;
mod emulator;
mod redis;
mod transport;

pub use capture::{Capture, CaptureGuard};
#[cfg(feature = "client")]
pub use client::{builder, client};
pub use emulator::{BACKUP, BACKUP_SECRET, KEY, SECRET, emulator, emulator_builder, two_keys};
pub use redis::{RedisServer, redis};
pub use transport::{BoxError, transport};
