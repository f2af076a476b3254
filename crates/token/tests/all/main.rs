//! End-to-end behaviour of the token manager and the auth middleware, against the
//! in-process emulator. Time-dependent tests run on tokio's paused clock.

mod aborted;
mod api_key;
mod auth_layer;
mod backoff;
mod cancellation;
mod expiry;
mod fetch_errors;
mod herd;
mod limits;
mod odd_answers;
mod redirects;
mod retry_after;
mod rotation;
mod secrets;
mod shared_cache;
mod threads;
mod tls;

use std::time::Duration;

use evolution_emulator::Emulator;
use evolution_token::{Credentials, TokenManager, TokenManagerBuilder};

pub(crate) const KEY: &str = "test-key";
pub(crate) const SECRET: &str = "test-secret-do-not-print";

pub(crate) async fn emulator() -> Emulator {
    emulator_with_ttl(Duration::from_secs(3600)).await
}

pub(crate) async fn emulator_with_ttl(ttl: Duration) -> Emulator {
    Emulator::builder()
        .key(KEY, SECRET)
        .key("other-key", "other-secret")
        .ttl(ttl)
        .start()
        .await
        .expect("emulator starts")
}

pub(crate) fn builder(emu: &Emulator) -> TokenManagerBuilder {
    TokenManager::builder(Credentials::new(KEY, SECRET)).auth_url(emu.auth_url())
}

pub(crate) fn manager(emu: &Emulator) -> TokenManager {
    builder(emu).build().expect("valid configuration")
}
