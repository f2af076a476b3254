//! A resilient client for Cloud.ru Evolution inference.
//!
//! [`EvolutionInference`] is the typed, async chat API of the reference Python SDK
//! (`invoke`, `generate`, `chat`, `stream`, `models`), built as a tower stack around
//! `reqwest` so that token management, retries, key fallback and metrics are layers;
//! [`EvolutionInference::embeddings`] serves `POST /embeddings` through the same stack.
//! [`blocking::EvolutionInference`] serves synchronous code.
//!
//! ```no_run
//! use evolution_client::{ChatRequest, EvolutionInference};
//!
//! # async fn run() -> evolution_client::Result<()> {
//! // EVOLUTION_KEY_ID and _SECRET (or EVOLUTION_API_KEY), _BASE_URL, _MODEL
//! let llm = EvolutionInference::from_env()?;
//! println!("{}", llm.invoke("Привет!").await?);
//!
//! let answer = llm
//!     .chat(ChatRequest::new().system("Be brief.").user("What is Rust?").temperature(0.2))
//!     .await?;
//! println!("{}", answer.text().unwrap_or_default());
//! # Ok(()) }
//! ```
//!
//! # Per-thread state
//!
//! The hot path keeps a few things per thread instead of in shared memory or in the
//! request (a request extension would make every copy kept for a resend allocate). These
//! are all the thread-locals of the workspace, and what each assumes:
//!
//! | Where | What it holds | What it assumes |
//! |---|---|---|
//! | `token/src/manager/local.rs` | a copy of each manager's current token (up to 8 managers) | nothing of the caller: a miss copies the shared token again; a dropped manager's copy lingers until the thread's next new copy |
//! | `token/src/deadline/mod.rs` | the earliest deadline of the `Deadline` calling or polling on this thread | the call is polled inside the `Deadline`'s scope: a task hop below it (tower's `Buffer`) hides the deadline, and `Auth` then fails a token wait with `Elapsed` instead of `TokenError::Deadline` |
//! | `metrics/src/attempts.rs` | the attempt count of the call being made | the same for the `MetricsService`'s scope: across a task hop the attempts are not counted and the call is recorded without them |
//! | `metrics/src/pending.rs` | the open [`metrics::capture`] slot | the same: a success head recorded on another task is recorded at once, not handed to the capture |
//! | `metrics/src/shard.rs` | this thread's shard number (for [`Stats`] cells and the stack instances) | nothing: two threads may share a shard, so a shard holds atomics or a lock that is only tried |
//! | `client/src/thread_stacks.rs` | (no thread-local of its own) an instance of the stack per shard, borrowed for a call | a busy shard or an instance not ready at once falls back to a clone: never waits |
//! | `client/src/recent_urls.rs` | the last 4 `Uri` → `Url` conversions of the transport | a parse is a pure function of the text; what it remembers stays until replaced or the thread ends |
//! | `retry/src/reqwest.rs` | the last transient failure, from the reqwest-retry strategy to its policy | reqwest-retry (0.9) calls the policy right after the strategy, with no `.await` between; tagged per stack so stacks do not mix |
//!
//! The three scopes (deadline, attempts, capture) are opened around each call and each
//! poll, not once per call, so a call whose task moves between the worker threads of a
//! multi-threaded runtime keeps them; only a hop to another task loses them.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

#[cfg(feature = "async-openai")]
pub mod async_openai;
pub mod blocking;
mod builder;
mod chat;
mod client;
pub mod config_file;
mod counted_body;
mod deployment;
mod embeddings;
mod error;
mod error_body;
mod operation;
#[cfg(feature = "otel")]
pub mod otel;
mod params;
mod recent_urls;
mod redirect;
#[cfg(feature = "rig")]
pub mod rig;
pub mod sse;
pub mod stack;
mod stream;
mod stream_usage;
mod thread_stacks;
pub mod trace;
mod transport;
mod watch;

pub use self::builder::{
    DEFAULT_REQUEST_TIMEOUT, ENV_BACKUP_KEY_ID, ENV_BACKUP_SECRET, ENV_BASE_URL, ENV_CONFIG,
    ENV_MODEL, EvolutionInferenceBuilder,
};
pub use self::chat::{
    ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice, Delta, Message, Model,
    ModelMetadata, Overrides, Role, Usage,
};
pub use self::client::{EvolutionInference, MAX_RESPONSE_BYTES};
pub use self::deployment::{Deployment, DeploymentKey};
pub use self::embeddings::{Embedding, EmbeddingsRequest, EmbeddingsResponse};
pub use self::error::{Error, Result};
pub use self::params::{
    DEFAULT_MAX_TOKENS, DEFAULT_N, DEFAULT_PENALTY, DEFAULT_TEMPERATURE, DEFAULT_TOP_P,
};
pub use self::stream::{ChatStream, STREAM_ERROR_STATUS, StreamTimeout};
pub use self::transport::{Body, HttpTransport};
pub use evolution_fallback::{self as fallback, Failback, FallbackHandle};
pub use evolution_metrics::{self as metrics, Metrics, Stats};
pub use evolution_pool as pool;
pub use evolution_retry::{self as retry, RetryConfig};
pub use evolution_token as token;
// The key, IAM and shared-cache variables are named once, in the token crate, which reads
// them too (`ENV_REDIS_URL` without its `redis` feature as well, so the client can warn).
pub use evolution_token::{ENV_API_KEY, ENV_KEY_ID, ENV_REDIS_URL, ENV_SECRET, ENV_TOKEN_URL};

// The README's Rust snippets compile as doctests of this crate.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
