//! What every clone of one layer or middleware shares, and the one retry decision both
//! stacks make.

use std::sync::Arc;
use std::time::Duration;

use tower::retry::budget::{Budget, TpsBudget};

use crate::backoff::JitterRng;
use crate::config::RetryConfig;
use crate::observe::{RetryEvent, RetryReason};

/// Shared by every clone of a [`RetryPolicy`](crate::RetryPolicy) or of a reqwest policy and
/// its strategy.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: RetryConfig,
    pub(crate) budget: Arc<TpsBudget>,
    pub(crate) rng: JitterRng,
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
    /// first attempt started; `Some(wait)` if so. `backoff` gives the schedule's next delay and
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
    ) -> Option<Duration> {
        let config = &self.config;
        let reason = failure.reason;
        if attempts >= config.max_attempts {
            tracing::debug!(attempts, %reason, "not retrying: attempts used up");
            return None;
        }
        let Some(backoff) = backoff() else {
            tracing::debug!(attempts, %reason, "not retrying: the backoff schedule ended");
            return None;
        };
        let delay = match failure.retry_after {
            Some(asked) => backoff.max(asked.min(config.max_retry_after)),
            None => backoff,
        };
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
            return None;
        }
        if !self.budget.withdraw() {
            tracing::debug!(attempts, %reason, "not retrying: the retry budget is exhausted");
            return None;
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
        Some(delay)
    }
}
