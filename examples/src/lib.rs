//! Shared set-up for the examples: Cloud.ru when `EVOLUTION_BASE_URL` is set, the
//! embedded emulator otherwise.

use evolution_client::{EvolutionInference, EvolutionInferenceBuilder};
use evolution_emulator::{DEMO_KEY_ID, DEMO_MODEL, DEMO_SECRET, Emulator};

/// Where an example's requests go.
#[derive(Debug)]
pub enum Target {
    /// Cloud.ru (or any endpoint) configured by the `EVOLUTION_*` variables.
    Remote,
    /// The emulator started in this process.
    Embedded(Emulator),
}

impl Target {
    /// Cloud.ru if `EVOLUTION_BASE_URL` is set, else a fresh embedded emulator.
    /// Prints which one as the example's first line.
    pub async fn pick() -> Self {
        if std::env::var_os("EVOLUTION_BASE_URL").is_some() {
            println!("Using the endpoint from EVOLUTION_BASE_URL (credentials from EVOLUTION_*).");
            Self::Remote
        } else {
            let emulator = Emulator::builder()
                .start()
                .await
                .expect("the embedded emulator starts on a free loopback port");
            println!(
                "EVOLUTION_BASE_URL is not set: running on the embedded emulator at {}.",
                emulator.base_url()
            );
            Self::Embedded(emulator)
        }
    }

    /// The emulator, when embedded.
    pub fn emulator(&self) -> Option<&Emulator> {
        match self {
            Self::Embedded(emulator) => Some(emulator),
            Self::Remote => None,
        }
    }

    /// A builder with the target's URLs, key and model set.
    pub fn builder(&self) -> EvolutionInferenceBuilder {
        match self {
            Self::Remote => EvolutionInferenceBuilder::from_env(),
            Self::Embedded(emulator) => EvolutionInference::builder()
                .model(DEMO_MODEL)
                .key_id(DEMO_KEY_ID)
                .secret(DEMO_SECRET)
                .base_url(emulator.base_url())
                .auth_url(emulator.auth_url()),
        }
    }

    /// The model to ask.
    pub fn model(&self) -> String {
        match self {
            Self::Remote => std::env::var("EVOLUTION_MODEL").unwrap_or_default(),
            Self::Embedded(_) => DEMO_MODEL.to_owned(),
        }
    }
}
