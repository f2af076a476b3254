//! A synchronous client, for code without an async runtime (like `reqwest::blocking`).
//!
//! ```no_run
//! use evolution_client::blocking::EvolutionInference;
//!
//! let llm = EvolutionInference::from_env()?;
//! println!("{}", llm.invoke("Привет!")?);
//! # Ok::<(), evolution_client::Error>(())
//! ```
//!
//! It owns a small tokio runtime; clones share it, and any number of threads may
//! call it at once. Do not call it from inside an async runtime (it would block that
//! runtime's thread): use the async [`crate::EvolutionInference`] there.

use std::sync::Arc;

use tokio::runtime::Runtime;

use crate::{ChatRequest, ChatResponse, Error, EvolutionInferenceBuilder, Model, Result};

/// The blocking counterpart of [`crate::EvolutionInference`].
#[derive(Debug, Clone)]
pub struct EvolutionInference {
    client: crate::EvolutionInference,
    runtime: Arc<Runtime>,
}

impl EvolutionInference {
    /// Builds from a configured builder.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] as for the async client, or if the runtime cannot start.
    pub fn from_builder(builder: EvolutionInferenceBuilder) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("evolution-blocking")
            .enable_all()
            .build()
            .map_err(|error| {
                Error::config("runtime", format!("cannot start a tokio runtime: {error}"))
            })?;
        // Built inside the runtime so that everything it spawns lives there.
        let client = {
            let _enter = runtime.enter();
            builder.build()?
        };
        Ok(Self {
            client,
            runtime: Arc::new(runtime),
        })
    }

    /// Configured from the `EVOLUTION_*` variables and `.env`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the variable to set.
    pub fn from_env() -> Result<Self> {
        Self::from_builder(EvolutionInferenceBuilder::from_env())
    }

    /// See [`crate::EvolutionInference::invoke`].
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub fn invoke(&self, prompt: impl Into<String>) -> Result<String> {
        self.runtime.block_on(self.client.invoke(prompt))
    }

    /// See [`crate::EvolutionInference::generate`].
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub fn generate<I, P>(&self, prompts: I) -> Result<Vec<String>>
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.runtime.block_on(self.client.generate(prompts))
    }

    /// See [`crate::EvolutionInference::chat`].
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub fn chat(&self, request: ChatRequest) -> Result<ChatResponse> {
        self.runtime.block_on(self.client.chat(request))
    }

    /// See [`crate::EvolutionInference::models`].
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub fn models(&self) -> Result<Vec<Model>> {
        self.runtime.block_on(self.client.models())
    }

    /// The async client inside, sharing this one's token cache and pool.
    pub fn async_client(&self) -> &crate::EvolutionInference {
        &self.client
    }
}
