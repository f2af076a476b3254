//! [`Load`]: a deployment's peak-EWMA latency and calls in flight, for `least_loaded`.
//!
//! The measure is tower's (`tower::load::PeakEwma`, from Finagle): the cost of a deployment
//! is its latency estimate times one more than its calls in flight, and the estimate jumps
//! to any slower response at once (the peak) and decays towards the average over
//! [`DECAY`]. tower's `PeakEwma` itself is not used because it is a service wrapper that is
//! not `Clone` and counts calls by the clones of an `Arc`: a pool calls a clone of each
//! deployment's stack per call, from many tasks, so it keeps the same numbers in atomics
//! beside the stack instead.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The latency assumed of a deployment before its first answer (linkerd's default).
pub(crate) const DEFAULT_RTT: Duration = Duration::from_millis(30);
/// How fast the peak decays towards the average (linkerd's default).
pub(crate) const DECAY: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(crate) struct Load {
    in_flight: AtomicU32,
    /// Calls it answered (the verdict `Served`), for the handle.
    served: AtomicU64,
    estimate: Mutex<Estimate>,
}

#[derive(Debug)]
struct Estimate {
    /// Seconds.
    rtt: f64,
    at: Instant,
    /// Whether `rtt_ns` is still the default: the first answer replaces it.
    default: bool,
}

impl Load {
    pub(crate) fn new() -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            served: AtomicU64::new(0),
            estimate: Mutex::new(Estimate {
                rtt: DEFAULT_RTT.as_secs_f64(),
                at: Instant::now(),
                default: true,
            }),
        }
    }

    /// Calls in flight.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn start(&self) -> u32 {
        self.in_flight.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn end(&self) -> u32 {
        self.in_flight
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1)
    }

    /// Calls answered.
    pub(crate) fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Counts an answered call.
    pub(crate) fn serve(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
    }

    /// Records an answer that took `rtt`, received at `now` (only `least_loaded` reads the
    /// estimate, so only its calls pay for the clock reads and the lock).
    pub(crate) fn observe(&self, rtt: Duration, now: Instant) {
        let rtt = rtt.as_secs_f64();
        let mut estimate = self.estimate.lock().unwrap_or_else(|e| e.into_inner());
        // One `exp` for both the decay and the moving average's weight.
        let weight = estimate.weight(now);
        let decayed = estimate.rtt * weight;
        estimate.rtt = if decayed < rtt || estimate.default {
            rtt
        } else {
            estimate.rtt * weight + rtt * (1.0 - weight)
        };
        estimate.at = now;
        estimate.default = false;
    }

    /// The latency estimate (seconds) at `now` times one more than the calls in flight.
    pub(crate) fn cost(&self, now: Instant) -> f64 {
        let pending = f64::from(self.in_flight());
        let estimate = self.estimate.lock().unwrap_or_else(|e| e.into_inner());
        estimate.rtt * estimate.weight(now) * (pending + 1.0)
    }
}

impl Estimate {
    /// How much of the estimate is left at `now`: it decays towards zero between answers,
    /// as tower's does, so that a deployment that was slow once is tried again.
    fn weight(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (-elapsed / DECAY.as_secs_f64()).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_slow_answer_raises_the_cost_at_once_and_it_decays() {
        let fast = Load::new();
        let slow = Load::new();
        let now = Instant::now();
        fast.observe(Duration::from_millis(1), now);
        slow.observe(Duration::from_millis(50), now);
        assert!(slow.cost(now) > 10.0 * fast.cost(now));
        slow.start();
        let busy = slow.cost(now);
        slow.end();
        assert!(busy > 1.9 * slow.cost(now));
        tokio::time::advance(DECAY * 5).await;
        assert!(slow.cost(Instant::now()) < 0.001);
    }
}
