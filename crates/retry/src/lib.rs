//! Retries for Evolution inference, as a tower layer and for reqwest-middleware, driven by
//! one [`RetryConfig`].
//!
//! The reference client's `RetryableEvolutionInference` (3 attempts, 1 s × 2ⁿ) grown into
//! what resilience libraries do:
//!
//! - **what** is retried is a classification ([`Retryable`]): 408, 429, 500, 502, 503, 504,
//!   connection failures and per-attempt timeouts; not other 4xx, not an answer whose body
//!   says the quota is exhausted ([`is_quota_exhausted`]), not rejected credentials, and not
//!   a token error the token manager has already retried ([`classify_token`]: IAM has one
//!   retry schedule, the token manager's). The rules are public functions
//!   ([`classify_status`], [`classify_error`]) behind a [`Classify`] trait you can replace;
//! - **whether to resend** what may already have reached the server (a timed-out attempt, a
//!   connection lost after the request was written) is a setting:
//!   [`retry_on_timeout`](RetryConfigBuilder::retry_on_timeout) and
//!   [`retry_ambiguous`](RetryConfigBuilder::retry_ambiguous), on by default as in the OpenAI
//!   SDKs; a resent chat completion may be generated and billed again;
//! - **when** is exponential backoff (1 s × 2ⁿ capped at 30 s) with [`Jitter`] (full by
//!   default), at most 3 attempts, and the server's `Retry-After` / `retry-after-ms` when it
//!   asks for longer, up to 60 s; a server asking for more is not retried
//!   ([`LongRetryAfter`]), nor is a retry whose wait would overrun the overall deadline: the
//!   caller gets the last answer at once;
//! - **how much** is bounded by a [`TpsBudget`] shared by every clone of the layer (20% extra
//!   load plus 10 retries a second by default), so a failing backend cannot be hammered;
//! - every retry is a `tracing` event and goes to each [`RetryObserver`] with its
//!   [`RetryReason`].
//!
//! [`RetryLayer`] is `tower::retry::Retry` with [`RetryPolicy`]; it looks only at the response
//! head, so a streamed answer is retried only before it starts. For reqwest-middleware,
//! [`RetryConfig::into_middleware`] gives a `reqwest_retry::RetryTransientMiddleware` using
//! [`ReqwestRetryStrategy`] and [`ReqwestRetryPolicy`] (see [`ReqwestRetryPolicy`] for
//! the few differences).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use bytes::Bytes;
//! use evolution_retry::{BoxError, RetryConfig, RetryLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! // A backend that is unavailable twice, then answers.
//! let calls = Arc::new(AtomicU32::new(0));
//! let counter = calls.clone();
//! let backend = service_fn(move |_: http::Request<Bytes>| {
//!     let status = if counter.fetch_add(1, Ordering::SeqCst) < 2 { 503 } else { 200 };
//!     async move { Ok::<_, BoxError>(http::Response::builder().status(status).body(Bytes::new())?) }
//! });
//!
//! let service = ServiceBuilder::new()
//!     .layer(RetryLayer::new(RetryConfig::default()))
//!     .service(backend);
//! let response = service.oneshot(http::Request::new(Bytes::new())).await?;
//! assert_eq!(response.status(), 200);
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! # Ok(()) }
//! ```
//!
//! # Cargo features
//!
//! - `backoff` (off): accept a [`backoff`](https://docs.rs/backoff) crate schedule
//!   (`RetryConfigBuilder::backoff`), for users who already configure that crate. It is not a
//!   default because the `backoff` crate is unmaintained (RUSTSEC-2025-0012) and this crate's
//!   own [`ExponentialBackoff`] covers its schedules.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod backoff;
mod classify;
mod config;
mod error_body;
pub mod future;
mod layer;
mod no_retry;
mod observe;
mod policy;
mod reqwest;
mod retry_after;
mod shared;

pub use self::backoff::{ExponentialBackoff, Jitter};
pub use self::classify::{
    Classify, DefaultClassifier, Retryable, classify_error, classify_status, classify_token,
};
pub use self::config::{
    ConfigError, DEFAULT_BASE_DELAY, DEFAULT_BUDGET_MIN_PER_SEC, DEFAULT_BUDGET_RETRY_RATIO,
    DEFAULT_BUDGET_TTL, DEFAULT_FACTOR, DEFAULT_LONG_RETRY_AFTER, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_DELAY, DEFAULT_MAX_RETRY_AFTER, DEFAULT_RETRY_AMBIGUOUS, DEFAULT_RETRY_ON_TIMEOUT,
    RetryConfig, RetryConfigBuilder,
};
pub use self::error_body::{
    ErrorBody, MAX_ERROR_BODY_BYTES, QUOTA_EXHAUSTED_CODES, is_quota_exhausted,
};
pub use self::layer::RetryLayer;
pub use self::no_retry::NoRetry;
pub use self::observe::{RetryEvent, RetryObserver, RetryReason};
pub use self::policy::RetryPolicy;
pub use self::reqwest::{ReqwestRetryPolicy, ReqwestRetryStrategy, RetryMiddleware};
pub use self::retry_after::{
    Clock, LongRetryAfter, RETRY_AFTER_MS, RetryAfterTooLong, SystemClock, parse_retry_after,
    parse_retry_after_ms, retry_after,
};
pub use evolution_token::BoxError;
pub use tower::retry::Retry;
pub use tower::retry::budget::TpsBudget;
