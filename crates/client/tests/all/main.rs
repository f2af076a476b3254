//! `EvolutionInference` against the in-process emulator.

mod api;
mod blocking;
mod body;
mod config;
mod errors;
mod fallback;
mod metrics;
mod retry;
mod send;
mod tokens;
mod transport;

use evolution_client::{EvolutionInference, EvolutionInferenceBuilder};
use evolution_emulator::{DEMO_MODEL, Emulator};

pub(crate) const KEY: &str = "client-key";
pub(crate) const SECRET: &str = "client-secret-never-printed";

pub(crate) async fn emulator() -> Emulator {
    Emulator::builder()
        .key(KEY, SECRET)
        .start()
        .await
        .expect("emulator starts")
}

pub(crate) fn builder(emu: &Emulator) -> EvolutionInferenceBuilder {
    EvolutionInference::builder()
        .model(DEMO_MODEL)
        .key_id(KEY)
        .secret(SECRET)
        .base_url(emu.base_url())
        .auth_url(emu.auth_url())
}

pub(crate) fn client(emu: &Emulator) -> EvolutionInference {
    builder(emu).build().expect("valid configuration")
}
