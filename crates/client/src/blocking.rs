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
//! call it at once. Each call runs on that runtime, and the calling thread waits for it
//! without entering a runtime of its own, so the client may be built, called and dropped
//! anywhere, inside async code too, without a panic. Inside async code, though, a call
//! blocks the thread that polls your tasks until the answer comes (on a single-threaded
//! runtime nothing else runs meanwhile, not even a server your call is waiting for): use
//! the async [`crate::EvolutionInference`] there (`async_client()` gives the one inside,
//! sharing this one's token cache and connections).

use std::future::Future;
use std::panic::{AssertUnwindSafe, resume_unwind};
use std::sync::Arc;
use std::sync::mpsc;

use futures_util::FutureExt;
use tokio::runtime::{Handle, Runtime};

use crate::{
    ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse, Error,
    EvolutionInferenceBuilder, Model, Result,
};

/// Worker threads of the client's runtime.
const WORKER_THREADS: usize = 2;

/// The blocking counterpart of [`crate::EvolutionInference`].
#[derive(Debug, Clone)]
pub struct EvolutionInference {
    client: crate::EvolutionInference,
    runtime: Arc<OwnRuntime>,
}

impl EvolutionInference {
    /// Builds from a configured builder.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] as for the async client, or if the runtime cannot start.
    pub fn from_builder(builder: EvolutionInferenceBuilder) -> Result<Self> {
        let runtime = OwnRuntime::start()?;
        // Built inside the runtime so that everything it spawns lives there. On an error
        // `runtime` is dropped here, which is safe inside async code too.
        let client = {
            let _enter = runtime.handle().enter();
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
        let client = self.client.clone();
        let prompt = prompt.into();
        self.runtime.run(async move { client.invoke(prompt).await })
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
        let client = self.client.clone();
        let prompts: Vec<String> = prompts.into_iter().map(Into::into).collect();
        self.runtime
            .run(async move { client.generate(prompts).await })
    }

    /// See [`crate::EvolutionInference::chat`].
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub fn chat(&self, request: ChatRequest) -> Result<ChatResponse> {
        let client = self.client.clone();
        self.runtime.run(async move { client.chat(request).await })
    }

    /// See [`crate::EvolutionInference::embeddings`].
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub fn embeddings(&self, request: impl Into<EmbeddingsRequest>) -> Result<EmbeddingsResponse> {
        let client = self.client.clone();
        let request = request.into();
        self.runtime
            .run(async move { client.embeddings(request).await })
    }

    /// See [`crate::EvolutionInference::models`].
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub fn models(&self) -> Result<Vec<Model>> {
        let client = self.client.clone();
        self.runtime.run(async move { client.models().await })
    }

    /// The async client inside, sharing this one's token cache and pool.
    pub fn async_client(&self) -> &crate::EvolutionInference {
        &self.client
    }
}

/// The client's runtime. Never entered by a caller's thread: calls are spawned on it and
/// waited for on a channel, and it is shut down without blocking when dropped inside async
/// code. tokio panics when a runtime is run (`block_on`) or dropped (which waits for its
/// threads) on a thread that drives async tasks.
#[derive(Debug)]
struct OwnRuntime {
    /// Always `Some` until dropped.
    runtime: Option<Runtime>,
}

impl OwnRuntime {
    fn start() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("evolution-blocking")
            .enable_all()
            .build()
            .map_err(|error| {
                Error::config("runtime", format!("cannot start a tokio runtime: {error}"))
            })?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    fn handle(&self) -> &Handle {
        self.runtime
            .as_ref()
            .expect("present until dropped")
            .handle()
    }

    /// Runs `call` on the runtime and blocks this thread until it ends. A panic inside
    /// `call` is resumed here, as `block_on` would.
    fn run<T: Send + 'static>(
        &self,
        call: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let (done, outcome) = mpsc::sync_channel(1);
        self.handle().spawn(async move {
            let outcome = AssertUnwindSafe(call).catch_unwind().await;
            // The caller waits for it; it may only be gone if its thread died.
            let _ = done.send(outcome);
        });
        // A std channel, not a runtime's `block_on`: waiting here is allowed on any thread.
        match outcome.recv() {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => resume_unwind(panic),
            // The task was dropped unfinished: only a runtime shutting down does that, and
            // this one lives as long as `self`.
            Err(_) => Err(Error::config(
                "runtime",
                "the blocking client's runtime stopped during the call",
            )),
        }
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        if Handle::try_current().is_ok() {
            // Inside async code (or on a thread of a runtime) a drop that waits for the
            // runtime's threads would panic: stop it without waiting. Its tasks are
            // cancelled; its threads end on their own.
            runtime.shutdown_background();
        } else {
            drop(runtime);
        }
    }
}
