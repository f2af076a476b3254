//! A lock-free latency histogram of atomics, for the p50/p99 of [`Stats`](crate::Stats).
//!
//! Log-linear buckets over microseconds: every power of two from 64 µs (2⁶) to 134 s (2²⁷)
//! is split into 8 equal sub-buckets, so a bucket spans at most 12.5 % of its lower bound,
//! and a quantile, reported as its bucket's midpoint, is within 6.25 % of a value in that
//! bucket. Latencies under 64 µs share the first bucket, those of 134 s or more the last;
//! every estimate is clamped to the smallest and largest latency seen, so a histogram of
//! one latency reports it exactly. Recording is a handful of relaxed atomic operations on
//! the recording thread's shard; 170 buckets take 1.4 KiB per shard.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Duration;

use crate::shard::Sharded;

/// log2 of the first bucketed value (64 µs).
const MIN_EXP: u32 = 6;
/// log2 of the first value in the overflow bucket (2²⁷ µs ≈ 134 s).
const MAX_EXP: u32 = 27;
/// log2 of the sub-buckets per power of two.
const SUB_BITS: u32 = 3;
const SUB_BUCKETS: usize = 1 << SUB_BITS;
const BUCKETS: usize = 2 + (MAX_EXP - MIN_EXP) as usize * SUB_BUCKETS;

#[derive(Debug)]
pub(crate) struct LatencyHistogram {
    // One set of buckets per thread shard: the count of a busy bucket would otherwise be
    // written from every core.
    buckets: Sharded<Buckets>,
    min_nanos: AtomicU64,
    max_nanos: AtomicU64,
}

#[derive(Debug)]
struct Buckets([AtomicU64; BUCKETS]);

impl Default for Buckets {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: Sharded::default(),
            min_nanos: AtomicU64::new(u64::MAX),
            max_nanos: AtomicU64::new(0),
        }
    }
}

impl LatencyHistogram {
    pub(crate) fn record(&self, latency: Duration) {
        // Not `as_micros()`: u128 arithmetic on the hot path for no gain.
        let micros = latency
            .as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(latency.subsec_micros()));
        self.buckets.local().0[index(micros)].fetch_add(1, Ordering::Relaxed);
        let nanos = saturating_nanos(latency);
        // A load first: `fetch_min`/`fetch_max` are compare-and-swap loops on x86, and the
        // extremes rarely move.
        if nanos < self.min_nanos.load(Ordering::Relaxed) {
            self.min_nanos.fetch_min(nanos, Ordering::Relaxed);
        }
        if nanos > self.max_nanos.load(Ordering::Relaxed) {
            self.max_nanos.fetch_max(nanos, Ordering::Relaxed);
        }
    }

    /// The `q` quantile (0 < q ≤ 1) by nearest rank, or zero when nothing was recorded.
    pub(crate) fn quantile(&self, q: f64) -> Duration {
        let mut counts = [0u64; BUCKETS];
        for shard in self.buckets.iter() {
            for (count, bucket) in counts.iter_mut().zip(&shard.0) {
                *count += bucket.load(Ordering::Relaxed);
            }
        }
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return Duration::ZERO;
        }
        // Nearest rank: the smallest value with at least `q * total` values at or below it.
        // Float precision is ample below 2⁵³ calls.
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        let mut bucket = BUCKETS - 1;
        for (i, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                bucket = i;
                break;
            }
        }
        let min = self.min_nanos.load(Ordering::Relaxed);
        let max = self.max_nanos.load(Ordering::Relaxed);
        let (low, high) = bounds_nanos(bucket);
        let estimate = if bucket == BUCKETS - 1 {
            max
        } else {
            low + (high - low) / 2
        };
        // `min > max` only in a race with the very first record.
        Duration::from_nanos(if min <= max {
            estimate.clamp(min, max)
        } else {
            estimate
        })
    }
}

pub(crate) fn saturating_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn index(micros: u64) -> usize {
    if micros < 1 << MIN_EXP {
        return 0;
    }
    let exp = u64::BITS - 1 - micros.leading_zeros();
    if exp >= MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = (micros >> (exp - SUB_BITS)) as usize & (SUB_BUCKETS - 1);
    1 + (exp - MIN_EXP) as usize * SUB_BUCKETS + sub
}

/// The range `[low, high)` of bucket `i`, in nanoseconds.
fn bounds_nanos(i: usize) -> (u64, u64) {
    if i == 0 {
        return (0, (1 << MIN_EXP) * 1_000);
    }
    if i == BUCKETS - 1 {
        return ((1 << MAX_EXP) * 1_000, u64::MAX);
    }
    let exp = MIN_EXP + ((i - 1) / SUB_BUCKETS) as u32;
    let sub = ((i - 1) % SUB_BUCKETS) as u64;
    let width = 1u64 << (exp - SUB_BITS);
    let low = (SUB_BUCKETS as u64 + sub) * width;
    (low * 1_000, (low + width) * 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_tile_the_range_in_order() {
        assert_eq!(BUCKETS, 170);
        let mut previous_high = 0;
        for i in 0..BUCKETS {
            let (low, high) = bounds_nanos(i);
            assert_eq!(low, previous_high, "bucket {i}");
            assert!(high > low);
            if i != 0 && i != BUCKETS - 1 {
                // At most 12.5 % wide.
                assert!((high - low) * 8 <= low, "bucket {i}");
                assert_eq!(index(low / 1_000), i);
                assert_eq!(index(high / 1_000 - 1), i);
            }
            previous_high = high;
        }
        assert_eq!(index(0), 0);
        assert_eq!(index(63), 0);
        assert_eq!(index(64), 1);
        assert_eq!(index((1 << MAX_EXP) - 1), BUCKETS - 2);
        assert!(index(120_000_000) < BUCKETS - 1, "120 s is bucketed");
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn empty_histogram_reports_zero() {
        let histogram = LatencyHistogram::default();
        assert_eq!(histogram.quantile(0.5), Duration::ZERO);
        assert_eq!(histogram.quantile(0.99), Duration::ZERO);
    }

    #[test]
    fn one_value_is_reported_exactly() {
        for latency in [
            Duration::from_micros(10),
            Duration::from_millis(250),
            Duration::from_secs(500),
        ] {
            let histogram = LatencyHistogram::default();
            histogram.record(latency);
            assert_eq!(histogram.quantile(0.5), latency);
            assert_eq!(histogram.quantile(0.99), latency);
        }
    }

    #[test]
    fn quantiles_land_in_the_bucket_of_the_true_value() {
        let histogram = LatencyHistogram::default();
        // 1 ms, 2 ms, ..., 1000 ms: the true p50 is 500 ms and the p99 990 ms.
        for ms in 1..=1000 {
            histogram.record(Duration::from_millis(ms));
        }
        for (q, truth) in [(0.5, 500), (0.99, 990)] {
            let truth = Duration::from_millis(truth);
            let estimate = histogram.quantile(q);
            let i = index(truth.as_micros() as u64);
            let (low, high) = bounds_nanos(i);
            let nanos = estimate.as_nanos() as u64;
            assert!(
                low <= nanos && nanos < high,
                "q={q}: {estimate:?} vs {truth:?}"
            );
        }
    }
}
