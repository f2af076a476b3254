//! A local server that speaks Cloud.ru Evolution's protocol, with fault injection.
//!
//! It serves, on 127.0.0.1, over HTTP/1.1 (and h2c beside it, behind
//! [`EmulatorBuilder::http2`]):
//!
//! - `POST /api/v1/auth/token` — IAM: exactly `{"keyId", "secret"}` (JSON) for
//!   `{"access_token", "expires_in", "token_type", "refresh_token", "id_token", "scope",
//!   "not-before-policy"}`;
//! - `POST /v1/chat/completions` — OpenAI-compatible chat completions, streaming included; the
//!   answer is `"[<key id>] echo: <last user message>"` (a message's content is a string or
//!   OpenAI's array of parts, whose text parts are read); a
//!   [reasoning model](EmulatorBuilder::reasoning_model) also answers `reasoning_content`;
//!   with a configured model list, another model answers 404 `model_not_found`; it can play
//!   an older server that [refuses `stream_options`](EmulatorBuilder::refuse_stream_options);
//! - `POST /v1/embeddings` — OpenAI-compatible embeddings: one deterministic unit vector per
//!   input (a string, an array of strings, or token arrays), as floats or base64;
//! - `GET /v1/models` — the configured models, with `owned_by` and `metadata` as the real API
//!   sends them;
//! - `GET /_emulator/stats` and `POST /_emulator/control` — counters and run-time control
//!   (see [`control`]).
//!
//! Tokens expire on tokio's clock, so a test under `tokio::time::pause()` sees expiry and delays
//! in virtual time. Faults — error statuses with headers, delays, malformed bodies, dropped
//! connections, cut, failed or stalled streams — are queued per [`Route`], drawn at random
//! from a seed, or set on one key's chat and embeddings requests until cleared
//! ([`Emulator::set_key_fault`]: a throttled or failing deployment among several).
//!
//! [`Stats`] counts requests and answers, and tallies the token usage the answers reported
//! ([`Stats::reported_input_tokens`]), so a test can compare a client's own token counts with
//! what was actually sent.
//!
//! # Error answers
//!
//! Unknown paths answer 404 and wrong methods 405, both with an OpenAI-style JSON error body;
//! so does every malformed request (400) and every bad or missing token (401, code
//! `invalid_api_key`).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use evolution_emulator::{Emulator, Fault, Route};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let emu = Emulator::builder()
//!     .key("k1", "s1")
//!     .ttl(Duration::from_secs(60))
//!     .start()
//!     .await?;
//! emu.push_fault(Route::Iam, Fault::status(503));
//! println!("IAM at {}, inference at {}", emu.auth_url(), emu.base_url());
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod auth;
mod body;
mod chat;
pub mod cli;
mod config;
mod conn;
pub mod control;
mod embeddings;
mod emulator;
mod error;
mod exchange;
mod fault;
mod iam;
mod injector;
mod keys;
mod models;
mod route;
mod server;
mod state;
mod stats;
mod sync;
mod tokens;

pub use config::{
    DEFAULT_EMBEDDING_DIMENSIONS, DEFAULT_TTL, DEMO_EMBEDDING_MODEL, DEMO_KEY_ID, DEMO_MODEL,
    DEMO_SECRET, EmulatorBuilder,
};
pub use emulator::Emulator;
pub use fault::{Fault, Malformed};
pub use route::Route;
pub use stats::Stats;
