//! Rate limits per deployment: requests and tokens per minute (GCRA).
//!
//! [`RateLimits`] holds a deployment's RPM and TPM. In process it runs GCRA with `governor`
//! on tokio's clock (so `tokio::time::pause()` drives it in tests); with the `redis`
//! feature, `RateLimits::shared` moves the buckets into Redis so that the replicas of a
//! service together stay under one key's limits, and falls back to a fraction of them,
//! locally, whenever Redis does not answer in time.
//!
//! Both limits let a whole minute through at once, then refill evenly: `rpm = 30` admits
//! 30 calls at once, then one every 2 seconds.
//!
//! Tokens are known only after the call, so a call takes its [`estimate_tokens`] up front
//! and [`settle`](RateLimits::settle)s the difference from the answer's `usage`.
//!
//! ```
//! use std::num::NonZeroU32;
//! use evolution_pool::{LimitKind, RateLimits, estimate_tokens};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let limits = RateLimits::new(NonZeroU32::new(2), NonZeroU32::new(1_000));
//! let body = br#"{"messages":[{"role":"user","content":"Hi"}],"max_tokens":100}"#;
//! let estimated = estimate_tokens(body);
//!
//! limits.acquire(estimated).await.unwrap();
//! limits.settle(estimated, 42); // the answer's usage.total_tokens
//! limits.acquire(estimated).await.unwrap();
//! let limited = limits.acquire(estimated).await.unwrap_err();
//! assert_eq!(limited.kind, LimitKind::Requests);
//! # }
//! ```

mod clock;
mod estimate;
mod local;
#[cfg(feature = "redis")]
mod shared;

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

pub use self::estimate::estimate_tokens;
use self::local::{LocalLimits, Refused};
#[cfg(feature = "redis")]
pub use self::shared::{
    DEFAULT_LOCAL_FRACTION, DEFAULT_REDIS_TIMEOUT, SharedLimits, SharedLimitsError,
};

/// Which limit a call ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
}

impl LimitKind {
    /// `rpm` or `tpm`: the `kind` label of `evolution_rate_limited_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "rpm",
            Self::Tokens => "tpm",
        }
    }
}

/// A deployment at its limit, and when it has room again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// The limit reached.
    pub kind: LimitKind,
    /// When the call would fit (by the limit reached; the other may still be short).
    pub retry_in: Duration,
}

/// The RPM and TPM limits of one deployment. A clone shares the buckets (one `Arc`).
///
/// # Token corrections
///
/// `governor` (and a GCRA bucket in general) cannot give tokens back. So
/// [`settle`](Self::settle) keeps the difference between a call's actual and estimated
/// tokens in a signed carry, and the next [`acquire`](Self::acquire) takes `tokens + carry`
/// (at least 0) and clears it: an under-estimate is charged late, an over-estimate is
/// credited to the next call. A credit larger than that call's tokens is dropped rather
/// than banked: the bucket refills by itself meanwhile, and a banked credit would let a
/// later burst go past the limit.
///
/// # Calls larger than the limit
///
/// A call needing more tokens than the whole TPM would never fit. It is admitted once the
/// bucket is full and takes all of it (its tokens beyond the TPM are not counted): such a
/// call is what the upstream decides about, not the limiter.
///
/// # Which limit refuses
///
/// Tokens are checked before the request: a refusal by either takes nothing (tokens taken
/// before a request refusal are credited back through the carry). When both are short,
/// the TPM is the one reported.
#[derive(Clone)]
pub struct RateLimits {
    inner: Arc<Inner>,
}

struct Inner {
    rpm: Option<NonZeroU32>,
    tpm: Option<NonZeroU32>,
    /// The limits in process: the only ones, or the fallback of shared limits.
    local: LocalLimits,
    /// Tokens owed (> 0) or credited (< 0) by settled calls; see "Token corrections".
    carry: AtomicI64,
    #[cfg(feature = "redis")]
    shared: Option<shared::SharedDeployment>,
}

impl RateLimits {
    /// Limits of `rpm` requests and `tpm` tokens per minute (either may be absent), in
    /// this process.
    pub fn new(rpm: Option<NonZeroU32>, tpm: Option<NonZeroU32>) -> Self {
        Self {
            inner: Arc::new(Inner {
                rpm,
                tpm,
                local: LocalLimits::new(rpm, tpm),
                carry: AtomicI64::new(0),
                #[cfg(feature = "redis")]
                shared: None,
            }),
        }
    }

    /// The requests per minute, if limited.
    pub fn rpm(&self) -> Option<NonZeroU32> {
        self.inner.rpm
    }

    /// The tokens per minute, if limited.
    pub fn tpm(&self) -> Option<NonZeroU32> {
        self.inner.tpm
    }

    /// Whether a token limit is set (calls then estimate their tokens).
    pub fn counts_tokens(&self) -> bool {
        self.inner.tpm.is_some()
    }

    /// Takes one request and `tokens` tokens (plus the carry of earlier corrections), or
    /// says which limit is reached and when the call would fit. Never waits: it returns at
    /// once in process, and within the Redis timeout when shared.
    ///
    /// # Errors
    ///
    /// [`Limited`] when the deployment has no room; nothing is taken then.
    pub async fn acquire(&self, tokens: u32) -> Result<(), Limited> {
        let inner = &*self.inner;
        let (carry, tokens) = if inner.tpm.is_some() {
            let carry = inner.carry.swap(0, Ordering::Relaxed);
            let owed = i64::from(tokens).saturating_add(carry).max(0);
            (carry, u32::try_from(owed).unwrap_or(u32::MAX))
        } else {
            (0, 0)
        };
        // If this future is dropped while Redis answers, the carry taken is lost: at most
        // one correction, never an error.
        self.check(tokens).await.map_err(|refused| {
            // Undo: the carry comes back, less the tokens a request refusal left taken.
            inner.add_carry(carry.saturating_sub(i64::from(refused.tokens_taken)));
            refused.limited
        })
    }

    async fn check(&self, tokens: u32) -> Result<(), Refused> {
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.inner.shared {
            return shared.check(tokens, &self.inner.local).await;
        }
        self.inner.local.check(tokens)
    }

    /// Corrects the tokens taken for a call that estimated `estimated` and used `actual`
    /// (its `usage.total_tokens`): the difference is owed or credited by the next
    /// [`acquire`](Self::acquire). Does nothing without a token limit.
    pub fn settle(&self, estimated: u32, actual: u32) {
        if self.counts_tokens() {
            self.inner
                .add_carry(i64::from(actual) - i64::from(estimated));
        }
    }
}

impl Inner {
    fn add_carry(&self, delta: i64) {
        if delta != 0 {
            // Saturating, so that no run of corrections can wrap the sign.
            let _ = self
                .carry
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |carry| {
                    Some(carry.saturating_add(delta))
                });
        }
    }
}

impl fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("RateLimits");
        debug
            .field("rpm", &self.inner.rpm)
            .field("tpm", &self.inner.tpm)
            .field("carry", &self.inner.carry.load(Ordering::Relaxed));
        #[cfg(feature = "redis")]
        debug.field("shared", &self.inner.shared);
        debug.finish()
    }
}

#[cfg(test)]
mod tests;
