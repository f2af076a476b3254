//! What every clone of one layer or middleware shares, and the one retry decision both
//! stacks make.

use std::sync::Arc;
use std::time::Duration;

use tower::retry::budget::{Budget, TpsBudget};

use crate::backoff::JitterRng;
use crate::config::RetryConfig;
use crate::observe::{RetryEvent, RetryReason};
use crate::retry_after::{LongRetryAfter, RetryAfterTooLong};

/// Shared by every clone of a [`RetryPolicy`](crate::RetryPolicy) or of a reqwest policy and
/// its strategy.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: RetryConfig,
    pub(crate) budget: Arc<TpsBudget>,
    pub(crate) rng: JitterRng,
}

/// Why a transient failure is not retried, when the caller may want to know: the other
/// reasons (attempts, budget, deadline, settings) are only logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GiveUp {
    /// The server asked for a longer wait than allowed ([`LongRetryAfter::Fail`]).
    RetryAfterTooLong(RetryAfterTooLong),
    /// Any other reason.
    Other,
}

/// A transient failure, as the policy saw it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Failure {
    pub(crate) reason: RetryReason,
    /// What the server asked for (`Retry-After`, `retry-after-ms`), not yet capped.
    pub(crate) retry_after: Option<Duration>,
}

impl Shared {
    pub(crate) fn new(config: RetryConfig) -> Self {
        let budget = Arc::new(config.new_budget());
        Self::with_budget(config, budget)
    }

    pub(crate) fn with_budget(config: RetryConfig, budget: Arc<TpsBudget>) -> Self {
        let rng = JitterRng::new(config.rng_seed);
        Self {
            config,
            budget,
            rng,
        }
    }

    /// A request is being sent for the first time: it funds future retries.
    pub(crate) fn deposit(&self) {
        self.budget.deposit();
    }

    /// Whether to retry after the `attempts`-th attempt failed transiently, `elapsed` after the
    /// first attempt started: `Ok(wait)` if so. `backoff` gives the schedule's next delay and
    /// is only asked once the attempt limit allows a retry.
    ///
    /// The checks run cheapest and least consequential first; the budget is only charged for a
    /// retry that will happen.
    pub(crate) fn decide(
        &self,
        attempts: u32,
        elapsed: Duration,
        failure: Failure,
        backoff: impl FnOnce() -> Option<Duration>,
    ) -> Result<Duration, GiveUp> {
        let config = &self.config;
        let reason = failure.reason;
        // A request that may have reached the server: resending it may run it twice.
        let resend_off = match reason {
            RetryReason::Timeout => !config.retry_on_timeout,
            RetryReason::Network => !config.retry_ambiguous,
            _ => false,
        };
        if resend_off {
            tracing::debug!(
                attempts,
                %reason,
                "not retrying: the request may have reached the server, and resending it is off"
            );
            return Err(GiveUp::Other);
        }
        // Before the attempt limit, so that the last answer too says how long to wait.
        let asked = failure.retry_after.unwrap_or_default();
        if asked > config.max_retry_after && config.long_retry_after == LongRetryAfter::Fail {
            tracing::debug!(
                attempts,
                %reason,
                ?asked,
                max = ?config.max_retry_after,
                "not retrying: the server asks for a longer wait than max_retry_after"
            );
            return Err(GiveUp::RetryAfterTooLong(RetryAfterTooLong {
                retry_after: asked,
                max_retry_after: config.max_retry_after,
            }));
        }
        if attempts >= config.max_attempts {
            tracing::debug!(attempts, %reason, "not retrying: attempts used up");
            return Err(GiveUp::Other);
        }
        let Some(backoff) = backoff() else {
            tracing::debug!(attempts, %reason, "not retrying: the backoff schedule ended");
            return Err(GiveUp::Other);
        };
        let delay = backoff.max(asked.min(config.max_retry_after));
        if let Some(deadline) = config.deadline
            && elapsed.saturating_add(delay) >= deadline
        {
            tracing::debug!(
                attempts,
                %reason,
                ?delay,
                ?elapsed,
                ?deadline,
                "not retrying: the wait would not end before the deadline"
            );
            return Err(GiveUp::Other);
        }
        if !self.budget.withdraw() {
            tracing::debug!(attempts, %reason, "not retrying: the retry budget is exhausted");
            return Err(GiveUp::Other);
        }
        let event = RetryEvent {
            attempt: attempts + 1,
            reason,
            delay,
        };
        tracing::info!(
            attempt = event.attempt,
            reason = %reason,
            delay = ?delay,
            "retrying"
        );
        for observer in &config.observers {
            observer.on_retry(&event);
        }
        Ok(delay)
    }
}
