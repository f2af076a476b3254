use std::time::Duration;

use evolution_retry::{Jitter, RetryConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{Events, always, run};

const SEED: u64 = 0x5eed;
const BASE: Duration = Duration::from_millis(500);
const MAX: Duration = Duration::from_secs(5);
const RETRIES: u32 = 6;

/// The delays the documentation promises, computed here from the formulas and the documented
/// generator (`StdRng::seed_from_u64`, one `f64` per jittered delay).
fn expected(jitter: Jitter) -> Vec<Duration> {
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut previous = BASE;
    (0..RETRIES)
        .map(|n| {
            let ceiling = (BASE * 2u32.pow(n)).min(MAX);
            let delay = match jitter {
                Jitter::None => ceiling,
                Jitter::Full => ceiling.mul_f64(rng.random::<f64>()),
                Jitter::Equal => {
                    let half = ceiling / 2;
                    half + (ceiling - half).mul_f64(rng.random::<f64>())
                }
                Jitter::Decorrelated => {
                    let spread = previous * 3 - BASE;
                    (BASE + spread.min(MAX).mul_f64(rng.random::<f64>())).min(MAX)
                }
                _ => unreachable!(),
            };
            previous = delay.max(BASE);
            delay
        })
        .collect()
}

async fn observed(jitter: Jitter) -> (Vec<Duration>, Vec<Duration>) {
    let events = Events::default();
    let config = RetryConfig::builder()
        .max_attempts(RETRIES + 1)
        .base_delay(BASE)
        .max_delay(MAX)
        .jitter(jitter)
        .rng_seed(SEED)
        .observer(events.observer())
        .build()
        .unwrap();
    let outcome = run(config, always(503)).await;
    assert_eq!(outcome.attempts.len(), RETRIES as usize + 1);
    let delays = events.take().iter().map(|event| event.delay).collect();
    (delays, outcome.gaps())
}

async fn check(jitter: Jitter) {
    let expected = expected(jitter);
    let (delays, gaps) = observed(jitter).await;
    assert_eq!(delays, expected, "{jitter:?}");
    // The backend sees the waits; tokio's timer rounds a deadline up to the millisecond.
    for (gap, delay) in gaps.iter().zip(&delays) {
        assert!(
            *gap >= *delay && *gap <= *delay + Duration::from_millis(1),
            "{jitter:?}: waited {gap:?} for {delay:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn exact_delays_without_jitter() {
    check(Jitter::None).await;
    let secs: Vec<f64> = expected(Jitter::None)
        .iter()
        .map(Duration::as_secs_f64)
        .collect();
    assert_eq!(secs, [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]);
}

#[tokio::test(start_paused = true)]
async fn exact_delays_with_full_jitter() {
    check(Jitter::Full).await;
}

#[tokio::test(start_paused = true)]
async fn exact_delays_with_equal_jitter() {
    check(Jitter::Equal).await;
    for (n, delay) in expected(Jitter::Equal).iter().enumerate() {
        let ceiling = (BASE * 2u32.pow(n as u32)).min(MAX);
        assert!(*delay >= ceiling / 2 && *delay <= ceiling);
    }
}

#[tokio::test(start_paused = true)]
async fn exact_delays_with_decorrelated_jitter() {
    check(Jitter::Decorrelated).await;
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_gives_the_same_delays() {
    let (first, _) = observed(Jitter::Full).await;
    let (second, _) = observed(Jitter::Full).await;
    assert_eq!(first, second);
}
