//! The pool's own errors.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::health::CooldownReason;
use crate::limit::LimitKind;

/// Why the soonest deployment of an [`Unavailable`] pool is not serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// It is cooling down, or its circuit is open.
    Cooldown(CooldownReason),
    /// It is at its rate limit.
    RateLimit(LimitKind),
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cooldown(reason) => write!(f, "{reason}"),
            Self::RateLimit(LimitKind::Requests) => {
                f.write_str("it is at its requests-per-minute limit")
            }
            Self::RateLimit(LimitKind::Tokens) => {
                f.write_str("it is at its tokens-per-minute limit")
            }
        }
    }
}

/// Every deployment is cooling down, has its circuit open or is at its rate limit, and the
/// call could not wait (the pool is set to fail at once, or the soonest is ready after the
/// call's deadline).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no deployment can take the call: every one is cooling down or at its rate limit; the soonest, `{soonest}`, is ready in {:.1} s ({why})",
    ready_in.as_secs_f64()
)]
pub struct Unavailable {
    /// The deployment ready soonest.
    pub soonest: Arc<str>,
    /// When it is ready.
    pub ready_in: Duration,
    /// Why it is not ready now.
    pub why: Waiting,
}

impl Unavailable {
    /// When to try again.
    pub fn retry_after(&self) -> Duration {
        self.ready_in
    }
}
