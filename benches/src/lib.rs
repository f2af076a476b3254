//! Shared set-up for the benchmarks: a runtime, an in-process emulator, a warm token cache.

use std::sync::Arc;

use evolution_emulator::Emulator;
use evolution_token::{AccessToken, Credentials, TokenManager};
use tokio::runtime::Runtime;

/// A multi-threaded runtime with the emulator running on it.
#[derive(Debug)]
pub struct Bench {
    /// The runtime everything runs on.
    pub runtime: Arc<Runtime>,
    /// The emulator serving IAM and inference.
    pub emulator: Emulator,
}

impl Bench {
    /// Starts a runtime and an emulator with the demo key.
    pub fn start() -> Self {
        let runtime = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a tokio runtime"),
        );
        let emulator = runtime
            .block_on(Emulator::builder().start())
            .expect("the emulator starts");
        Self { runtime, emulator }
    }

    /// A token manager for the demo key whose cache is already warm.
    pub fn warm_manager(&self) -> TokenManager {
        let tokens = TokenManager::builder(Credentials::new(
            evolution_emulator::DEMO_KEY_ID,
            evolution_emulator::DEMO_SECRET,
        ))
        .auth_url(self.emulator.auth_url())
        .build()
        .expect("valid configuration");
        self.runtime
            .block_on(tokens.get_token())
            .expect("the emulator issues a token");
        tokens
    }

    /// A token, for baselines that cache it themselves.
    pub fn token(&self) -> AccessToken {
        self.runtime
            .block_on(self.warm_manager().get_token())
            .expect("a token")
    }
}
