//! [`Stats`]: an in-process snapshot of what a [`Metrics`](crate::Metrics) handle recorded,
//! without any exporter.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::{Serialize, Serializer};
use tokio::time::Duration;

use crate::Outcome;
use crate::histogram::{LatencyHistogram, saturating_nanos};
use crate::shard::Sharded;

/// What every call adds to, per shard.
#[derive(Debug, Default)]
struct CallCells {
    requests: AtomicU64,
    successes: AtomicU64,
    auth_errors: AtomicU64,
    response_nanos: AtomicU64,
}

/// A snapshot of the counters of one [`Metrics`](crate::Metrics) handle (and its clones),
/// like the reference SDK's `get_stats()`.
///
/// Taken with [`Metrics::stats`](crate::Metrics::stats): a few relaxed atomic loads, so a
/// snapshot taken while calls are in flight may be off by those calls. It agrees with what
/// the same handle sent to the `metrics` recorder: `total_requests` is the sum of
/// `evolution_requests_total`, `avg_response_time` the mean of
/// `evolution_request_duration_seconds`, and so on.
///
/// Serialised with serde, durations are numbers of seconds (`0.25`), as in the reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Logical calls finished (answered, failed or cancelled).
    pub total_requests: u64,
    /// Calls that succeeded ([`Outcome::Ok`]): answered below 400 and, for a call whose
    /// caller read the body in a [`capture`](crate::capture) (every call of
    /// `evolution-client`), with a whole and well-formed body.
    pub successes: u64,
    /// Calls that ended in an authentication failure ([`Outcome::AuthError`]).
    pub auth_errors: u64,
    /// `successes` as a percentage of `total_requests`; 0 when there were no calls.
    pub success_rate: f64,
    /// Mean latency of a call; zero when there were no calls.
    #[serde(serialize_with = "seconds")]
    pub avg_response_time: Duration,
    /// Median latency, from a histogram with 12.5 % buckets (see the crate docs).
    #[serde(serialize_with = "seconds")]
    pub p50_response_time: Duration,
    /// 99th percentile latency, from the same histogram.
    #[serde(serialize_with = "seconds")]
    pub p99_response_time: Duration,
    /// Token refreshes that obtained a token.
    pub successful_refreshes: u64,
    /// Token refreshes that failed (after their own bounded retries).
    pub failed_refreshes: u64,
    /// Mean duration of a finished refresh, successful or not; zero when there was none.
    #[serde(serialize_with = "seconds")]
    pub avg_refresh_time: Duration,
    /// Whether the primary key serves calls (`true` until a fallback switch is recorded).
    pub using_primary: bool,
    /// Retries recorded.
    pub retries: u64,
    /// Fallback switches recorded, in either direction.
    pub fallback_switches: u64,
    /// Prompt tokens the API reported (`usage.prompt_tokens`), summed over the answers: the
    /// sum of `evolution_tokens_total{type="input"}`.
    pub input_tokens: u64,
    /// Generated tokens the API reported (`usage.completion_tokens`), summed.
    pub output_tokens: u64,
    /// The deployments of a key pool and their state, in the configured order; empty
    /// without a pool (filled in by the client, which owns the pool), and then left out of
    /// the serialised form, which stays the reference's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deployments: Vec<crate::DeploymentStats>,
}

fn seconds<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

/// The atomics behind [`Stats`].
#[derive(Debug)]
pub(crate) struct StatsCells {
    // Written on every call: sharded per thread (see `shard`).
    calls: Sharded<CallCells>,
    latency: LatencyHistogram,
    refreshes_ok: AtomicU64,
    refreshes_failed: AtomicU64,
    refresh_nanos: AtomicU64,
    using_primary: AtomicBool,
    retries: AtomicU64,
    fallback_switches: AtomicU64,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
}

impl Default for StatsCells {
    fn default() -> Self {
        Self {
            calls: Sharded::default(),
            latency: LatencyHistogram::default(),
            refreshes_ok: AtomicU64::new(0),
            refreshes_failed: AtomicU64::new(0),
            refresh_nanos: AtomicU64::new(0),
            using_primary: AtomicBool::new(true),
            retries: AtomicU64::new(0),
            fallback_switches: AtomicU64::new(0),
            input_tokens: AtomicU64::new(0),
            output_tokens: AtomicU64::new(0),
        }
    }
}

impl StatsCells {
    pub(crate) fn record_request(&self, outcome: Outcome, latency: Duration) {
        let calls = self.calls.local();
        calls
            .response_nanos
            .fetch_add(saturating_nanos(latency), Ordering::Relaxed);
        self.latency.record(latency);
        if outcome.is_success() {
            calls.successes.fetch_add(1, Ordering::Relaxed);
        }
        if outcome.is_auth() {
            calls.auth_errors.fetch_add(1, Ordering::Relaxed);
        }
        // Last, so that a concurrent snapshot rarely sees more successes than calls.
        calls.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_refresh(&self, success: bool, duration: Duration) {
        self.refresh_nanos
            .fetch_add(saturating_nanos(duration), Ordering::Relaxed);
        let counter = if success {
            &self.refreshes_ok
        } else {
            &self.refreshes_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_tokens(&self, input: u64, output: u64) {
        self.input_tokens.fetch_add(input, Ordering::Relaxed);
        self.output_tokens.fetch_add(output, Ordering::Relaxed);
    }

    pub(crate) fn record_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_switch(&self) {
        self.fallback_switches.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_using_primary(&self, using_primary: bool) {
        self.using_primary.store(using_primary, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let sum = |cell: fn(&CallCells) -> &AtomicU64| -> u64 {
            self.calls
                .iter()
                .map(|calls| cell(calls).load(Ordering::Relaxed))
                .sum()
        };
        let total_requests = sum(|calls| &calls.requests);
        let successes = sum(|calls| &calls.successes);
        let successful_refreshes = self.refreshes_ok.load(Ordering::Relaxed);
        let failed_refreshes = self.refreshes_failed.load(Ordering::Relaxed);
        let success_rate = if total_requests == 0 {
            0.0
        } else {
            (successes as f64 * 100.0 / total_requests as f64).min(100.0)
        };
        Stats {
            total_requests,
            successes,
            auth_errors: sum(|calls| &calls.auth_errors),
            success_rate,
            avg_response_time: mean(sum(|calls| &calls.response_nanos), total_requests),
            p50_response_time: self.latency.quantile(0.50),
            p99_response_time: self.latency.quantile(0.99),
            successful_refreshes,
            failed_refreshes,
            avg_refresh_time: mean(
                self.refresh_nanos.load(Ordering::Relaxed),
                successful_refreshes + failed_refreshes,
            ),
            using_primary: self.using_primary.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            fallback_switches: self.fallback_switches.load(Ordering::Relaxed),
            input_tokens: self.input_tokens.load(Ordering::Relaxed),
            output_tokens: self.output_tokens.load(Ordering::Relaxed),
            deployments: Vec::new(),
        }
    }
}

fn mean(total_nanos: u64, count: u64) -> Duration {
    match count {
        0 => Duration::ZERO,
        count => Duration::from_nanos(total_nanos / count),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_stats_are_zero_not_nan() {
        let stats = StatsCells::default().snapshot();
        assert_eq!(stats.total_requests, 0);
        assert_eq!(stats.success_rate, 0.0);
        assert_eq!(stats.avg_response_time, Duration::ZERO);
        assert_eq!(stats.p50_response_time, Duration::ZERO);
        assert_eq!(stats.avg_refresh_time, Duration::ZERO);
        assert!(stats.using_primary);
    }
}
