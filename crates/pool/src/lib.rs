//! A pool of Evolution keys ("deployments") behind one tower service.
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
