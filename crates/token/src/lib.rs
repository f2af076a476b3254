//! Cloud.ru IAM token management for Evolution inference.
//!
//! Every Evolution API call needs a short-lived bearer token, obtained by posting a
//! key id and secret to IAM. [`TokenManager`] does that exchange on first use, caches
//! the token, refreshes it in the background before it expires, and makes exactly one
//! IAM request for any number of concurrent callers. [`AuthLayer`] (tower) and
//! [`AuthMiddleware`] (reqwest-middleware) put the token on requests and turn a 401
//! for a revoked token into one transparent resend.
//!
//! When IAM fails, the manager backs off before it asks again (1 s, doubling up to 30 s:
//! [`FAILED_REFRESH_BACKOFF_BASE`], [`FAILED_REFRESH_BACKOFF_CAP`]), whoever asks; callers
//! get the cached token while it lasts, else the failure's error at once. An IAM outage
//! costs IAM one refresh per backoff, not one per call.
//!
//! A static Foundation Models API key ([`Credentials::api_key`], `EVOLUTION_API_KEY`) needs
//! no exchange: the manager hands out the key itself as its token, with no IAM request,
//! and names it by a non-secret label (`api-key-` and 8 hex digits of its SHA-256).
//!
//! Secrets and tokens are [`secrecy`] values: never in `Debug`, logs or errors.
//!
//! # Features
//!
//! - `shared-cache`: the `store` module, a token cache shared by the replicas of a service
//!   so that the fleet makes one IAM request per token lifetime, with `InMemoryStore`.
//! - `redis`: `store::RedisStore`, that cache in Redis, and `EVOLUTION_REDIS_URL`.
//!
//! # Example
//!
//! ```no_run
//! use evolution_token::{Credentials, TokenManager};
//!
//! # async fn run() -> Result<(), evolution_token::TokenError> {
//! let tokens = TokenManager::builder(Credentials::new("key-id", "secret")).build()?;
//! let token = tokens.get_token().await?; // one IAM request
//! let again = tokens.get_token().await?; // cached: an atomic load
//! assert!(token.same_as(&again));
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

pub mod auth;
mod backoff;
mod certificate;
mod credentials;
pub mod deadline;
mod error;
mod event;
mod fetch;
mod manager;
mod middleware;
mod response;
mod retry_after;
#[cfg(feature = "shared-cache")]
pub mod store;
mod token;

pub use self::auth::{Auth, AuthLayer};
pub use self::certificate::{certificate_error, is_certificate_error};
pub use self::credentials::{Credentials, ENV_API_KEY, ENV_KEY_ID, ENV_SECRET};
pub use self::deadline::{Deadline, DeadlineLayer, current_deadline};
pub use self::error::{AbortReason, InvalidResponseReason, TokenError, TokenErrorKind};
pub use self::event::{RefreshTrigger, StoreOperation, TokenEvent, TokenObserver};
#[cfg(feature = "shared-cache")]
pub use self::manager::MAX_SHARED_CACHE_LOCK_TTL;
pub use self::manager::{
    DEFAULT_AUTH_URL, DEFAULT_FETCH_ATTEMPTS, DEFAULT_FETCH_TIMEOUT, DEFAULT_REFRESH_AHEAD,
    DEFAULT_REFRESH_BUFFER, ENV_TOKEN_URL, FAILED_REFRESH_BACKOFF_BASE, FAILED_REFRESH_BACKOFF_CAP,
    MAX_FETCH_RETRY_AFTER, MAX_FETCH_TIMEOUT, MAX_REFRESH_RETRY_AFTER, MonitorGuard, TokenInfo,
    TokenManager, TokenManagerBuilder, parse_endpoint_url,
};
pub use self::middleware::AuthMiddleware;
pub use self::response::{
    DEFAULT_EXPIRES_IN, MAX_TOKEN_LIFETIME, TokenGrant, parse_token_response,
};
pub use self::token::AccessToken;

/// Environment variable for the Redis URL of the shared token cache
/// ([`TokenManagerBuilder::from_env`] reads it with the `redis` feature).
// Here, not in `store::redis`: without the `redis` feature the name is still read, by the
// client, to warn that the variable is set but the cache is off.
pub const ENV_REDIS_URL: &str = "EVOLUTION_REDIS_URL";

/// The error type between tower services (the tower convention).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
