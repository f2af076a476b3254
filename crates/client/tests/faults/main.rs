//! The fault matrix of issue 10: one scenario per row, through `EvolutionInference` with the
//! default stack (metrics → retry → attempt counter → per-attempt deadline → auth → sensitive
//! headers → trace → reqwest), against the in-process emulator.
//!
//! Each test asserts the outcome, the error variant and what its message tells the user to
//! check, and how many IAM and API requests the emulator saw. Counts follow from the defaults:
//! the client makes 3 attempts per call (`RetryConfig::default()`), and every token refresh
//! makes up to 3 IAM requests (`DEFAULT_FETCH_ATTEMPTS`) on 408/429/5xx, network errors and
//! timeouts, none on 401/403 or an unusable answer. A call that fails for want of a token is
//! not retried by the client: the refresh has already retried IAM (one schedule, not 3 × 3).
//!
//! Time-dependent rows run on tokio's paused clock, which jumps ahead whenever the runtime is
//! idle waiting on a timer (backoffs, emulator delays, timeouts).

mod api;
mod concurrency;
mod deadlines;
mod iam;
mod manager;
mod retries;
mod security;
mod streams;
mod transport;

use std::time::Duration;

use evolution_client::Error;
use evolution_emulator::{Emulator, Fault, Route};
use evolution_token::TokenError;

// The emulator, its keys and a client for it: the set-up shared with the other test binaries.
pub(crate) use evolution_testkit::{
    BACKUP, BACKUP_SECRET, KEY, SECRET, builder, client, emulator, emulator_builder, two_keys,
};

/// Client attempts per call with the default retry configuration.
pub(crate) const ATTEMPTS: u64 = 3;
/// IAM requests per refresh on transient IAM failures (`DEFAULT_FETCH_ATTEMPTS`).
pub(crate) const FETCH_ATTEMPTS: u64 = evolution_token::DEFAULT_FETCH_ATTEMPTS as u64;

/// Every request to `route` gets `fault` until [`heal`] (a probability-1 random fault).
pub(crate) fn break_route(emu: &Emulator, route: Route, fault: Fault) {
    emu.set_random_faults(vec![fault]);
    emu.set_fault_probability(1.0, 1, &[route]);
}

/// Stops the random faults of [`break_route`].
pub(crate) fn heal(emu: &Emulator) {
    emu.set_fault_probability(0.0, 1, &[]);
}

/// The expected answer of the emulator to `prompt` sent with `key`.
pub(crate) fn echo(key: &str, prompt: &str) -> String {
    format!("[{key}] echo: {prompt}")
}

/// `(IAM requests, chat requests)` the emulator saw.
pub(crate) fn seen(emu: &Emulator) -> (u64, u64) {
    let stats = emu.stats();
    (stats.iam_requests, stats.chat_requests)
}

/// Asserts `message` contains each of `parts`, printing it otherwise.
#[track_caller]
pub(crate) fn says(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "{part:?} missing from the message: {message}"
        );
    }
    assert!(!message.contains(SECRET), "the secret leaked: {message}");
}

/// The token error inside an [`Error::Auth`], or a panic naming what came instead.
#[track_caller]
pub(crate) fn token_error(error: &Error) -> &TokenError {
    match error {
        Error::Auth(token) => token,
        other => panic!("expected Error::Auth, got {other:?}"),
    }
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub(crate) fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    port
}

/// A deterministic pseudo-random sequence (xorshift64*), so runs are reproducible.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub(crate) fn millis(&mut self, max: u64) -> Duration {
        Duration::from_millis(self.below(max + 1))
    }
}
