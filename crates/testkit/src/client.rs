//! A client for the emulator of [`crate::emulator()`].

use evolution_client::{EvolutionInference, EvolutionInferenceBuilder};
use evolution_emulator::{DEMO_MODEL, Emulator};

use crate::{KEY, SECRET};

/// A builder calling `emu` with [`KEY`] and the emulator's model, for tests to adjust.
pub fn builder(emu: &Emulator) -> EvolutionInferenceBuilder {
    EvolutionInference::builder()
        .model(DEMO_MODEL)
        .key_id(KEY)
        .secret(SECRET)
        .base_url(emu.base_url())
        .auth_url(emu.auth_url())
}

/// A client with the default stack calling `emu` with [`KEY`].
pub fn client(emu: &Emulator) -> EvolutionInference {
    builder(emu).build().expect("valid configuration")
}
