//! A pool of Evolution keys ("deployments") behind one tower service.
//!
//! A deployment is a key's stack (its own token manager and `Auth` layer, possibly its own
//! endpoint and model) with a name, a weight and optional RPM/TPM limits. [`Pool`] sends
//! each call to one of them, chosen by a [`Strategy`]:
//!
//! - [`Strategy::Ordered`]: the first healthy one (failover, as a primary and backups);
//! - [`Strategy::RoundRobin`]; [`Strategy::Weighted`];
//! - [`Strategy::LeastLoaded`]: power of two choices over peak-EWMA latency × in-flight,
//!   tower's `balance` rule (see [`Pool`] for why not tower's `Balance` itself).
//!
//! A deployment whose key is rejected or that answers 429 cools down (for the cooldown or
//! the `Retry-After`), repeated server errors or timeouts open its circuit, and a call that
//! meets any of these moves to the next deployment at once. A deployment at its
//! [`RateLimits`] is skipped. When every one is cooling, the call waits for the soonest
//! within its deadline, or fails with [`Unavailable`] ([`AllCooling`]).
//! [`PoolEvent`]s feed metrics (evolution-metrics' `PoolMetrics`); a [`PoolHandle`] lists the
//! deployments and their state. In `evolution-client` the pool takes the place of
//! `Fallback` when the client has deployments (`EvolutionInferenceBuilder::deployment`).
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//!
//! use evolution_pool::{DeploymentState, Pool, PoolMember, Strategy};
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), evolution_token::BoxError> {
//! // Each deployment answers with its name; "main"'s key was revoked: it answers 401.
//! let deployment = |name: &'static str| {
//!     service_fn(move |_: Request<String>| async move {
//!         let status = if name == "main" { StatusCode::UNAUTHORIZED } else { StatusCode::OK };
//!         Ok::<_, Infallible>(Response::builder().status(status).body(name).unwrap())
//!     })
//! };
//! let pool = Pool::builder([
//!     PoolMember::new("main", deployment("main")),
//!     PoolMember::new("spare", deployment("spare")),
//! ])
//! .strategy(Strategy::Ordered)
//! .build()?;
//!
//! let response = pool.clone().oneshot(Request::new(String::new())).await?;
//! assert_eq!(*response.body(), "spare");
//! assert_eq!(pool.handle().deployments()[0].state, DeploymentState::Cooling);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod call;
mod classify;
mod error;
mod event;
mod handle;
mod health;
pub mod limit;
mod load;
mod member;
mod service;
mod strategy;

pub use self::call::Served;
pub use self::error::{Unavailable, Waiting};
pub use self::event::{PoolEvent, PoolObserver, RequestOutcome};
pub use self::handle::{DeploymentStatus, PoolHandle};
pub use self::member::PoolMember;
pub use self::service::{
    AllCooling, BuildError, DEFAULT_MAX_WAIT, Pool, PoolBuilder, ResponseFuture,
};

pub use self::health::{
    CooldownReason, DEFAULT_BREAKER_FAILURES, DEFAULT_BREAKER_OPEN, DEFAULT_BREAKER_WINDOW,
    DEFAULT_MAX_RATE_LIMIT_COOLDOWN, DEFAULT_RATE_LIMIT_COOLDOWN, DeploymentState, HealthConfig,
};
#[cfg(feature = "redis")]
pub use self::limit::{
    DEFAULT_LOCAL_FRACTION, DEFAULT_REDIS_TIMEOUT, SharedLimits, SharedLimitsError,
};
pub use self::limit::{LimitKind, Limited, RateLimits, estimate_tokens};
pub use self::strategy::{Strategy, UnknownStrategy};

/// The most deployments a pool holds.
pub const MAX_DEPLOYMENTS: usize = 64;
