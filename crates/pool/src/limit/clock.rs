//! Tokio's clock for `governor`, so that limits follow `tokio::time::pause()` in tests.

use std::ops::Add;

use governor::clock::{Clock, Reference};
use governor::nanos::Nanos;
use tokio::time::Instant;

/// `tokio::time::Instant::now()`: paused and advanced with the runtime's test clock, where
/// governor's own clocks (`quanta`, `std::time::Instant`) would keep real time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TokioClock;

/// An instant of [`TokioClock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TokioInstant(pub(crate) Instant);

impl Clock for TokioClock {
    type Instant = TokioInstant;

    fn now(&self) -> TokioInstant {
        TokioInstant(Instant::now())
    }
}

impl Add<Nanos> for TokioInstant {
    type Output = Self;

    fn add(self, nanos: Nanos) -> Self {
        // Far-future sums (never reached by a limiter's state) stay put rather than panic.
        Self(self.0.checked_add(nanos.into()).unwrap_or(self.0))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        Self(self.0.checked_sub(duration.into()).unwrap_or(self.0))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_the_paused_clock() {
        let clock = TokioClock;
        let start = clock.now();
        tokio::time::advance(Duration::from_secs(5)).await;
        let later = clock.now();
        assert_eq!(later.duration_since(start), Duration::from_secs(5).into());
        assert_eq!(start.duration_since(later), Nanos::from(0));
        assert_eq!(later.saturating_sub(Duration::from_secs(5).into()), start);
        assert_eq!(start + Nanos::from(Duration::from_secs(5)), later);
    }
}
