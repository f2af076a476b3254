//! A resilient client for Cloud.ru Evolution inference.
//!
//! [`EvolutionInference`] is the typed, async chat API of the reference Python SDK
//! (`invoke`, `generate`, `chat`, `stream`, `models`), built as a tower stack around
//! `reqwest` so that token management, retries, key fallback and metrics are layers.
//! [`blocking::EvolutionInference`] serves synchronous code.
//!
//! ```no_run
//! use evolution_client::{ChatRequest, EvolutionInference};
//!
//! # async fn run() -> evolution_client::Result<()> {
//! let llm = EvolutionInference::from_env()?; // EVOLUTION_KEY_ID, _SECRET, _BASE_URL, _MODEL
//! println!("{}", llm.invoke("Привет!").await?);
//!
//! let answer = llm
//!     .chat(ChatRequest::new().system("Be brief.").user("What is Rust?").temperature(0.2))
//!     .await?;
//! println!("{}", answer.text().unwrap_or_default());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

pub mod blocking;
mod builder;
mod chat;
mod client;
mod error;
mod recent_urls;
#[cfg(feature = "rig")]
pub mod rig;
pub mod sse;
pub mod stack;
mod stream;
mod thread_stacks;
pub mod trace;
mod transport;

pub use self::builder::{
    DEFAULT_MAX_TOKENS, DEFAULT_N, DEFAULT_PENALTY, DEFAULT_REQUEST_TIMEOUT, DEFAULT_TEMPERATURE,
    DEFAULT_TOP_P, ENV_BACKUP_KEY_ID, ENV_BACKUP_SECRET, ENV_BASE_URL, ENV_KEY_ID, ENV_MODEL,
    ENV_REDIS_URL, ENV_SECRET, ENV_TOKEN_URL, EvolutionInferenceBuilder,
};
pub use self::chat::{
    ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice, Delta, Message, Model,
    ModelMetadata, Overrides, Role, Usage,
};
pub use self::client::{EvolutionInference, MAX_RESPONSE_BYTES};
pub use self::error::{Error, Result};
pub use self::stream::{ChatStream, STREAM_ERROR_STATUS};
pub use self::transport::{Body, HttpTransport};
pub use evolution_fallback::{self as fallback, Failback, FallbackHandle};
pub use evolution_metrics::{self as metrics, Metrics, Stats};
pub use evolution_retry::{self as retry, RetryConfig};
pub use evolution_token as token;

// The README's Rust snippets compile as doctests of this crate.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
