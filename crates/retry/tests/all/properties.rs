use std::time::{Duration, SystemTime};

use evolution_retry::{
    ExponentialBackoff, Jitter, RetryConfig, parse_retry_after, parse_retry_after_ms,
};
use proptest::prelude::*;

use crate::{Answer, Events, run, status, status_with};

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
    ]
}

fn millis(range: std::ops::Range<u64>) -> impl Strategy<Value = Duration> {
    range.prop_map(Duration::from_millis)
}

proptest! {
    #[test]
    fn delays_never_exceed_the_cap(
        base in millis(0..10_000),
        extra in millis(0..120_000),
        factor in 1.0f64..10.0,
        jitter in jitter(),
        retry in any::<u32>(),
        previous in any::<u64>().prop_map(Duration::from_nanos),
        unit in any::<f64>(),
    ) {
        let max = base + extra;
        let backoff = ExponentialBackoff::new(base, factor, max, jitter).unwrap();
        let delay = backoff.delay(retry, previous, unit);
        prop_assert!(delay <= max, "{delay:?} > {max:?}");
        prop_assert!(backoff.ceiling(retry) <= max);
        if jitter != Jitter::Full {
            // Every jitter but full keeps the wait at least at half the base.
            prop_assert!(delay >= base / 2);
        }
    }

    #[test]
    fn ceilings_never_decrease(
        base in millis(0..10_000),
        factor in 1.0f64..10.0,
        retry in 0u32..200,
    ) {
        let backoff =
            ExponentialBackoff::new(base, factor, Duration::from_secs(30), Jitter::None).unwrap();
        prop_assert!(backoff.ceiling(retry) <= backoff.ceiling(retry + 1));
    }
}

/// One failing exchange against the policy, on a paused runtime of its own.
fn total_wait(config: RetryConfig, answers: Vec<Answer>) -> (Duration, Vec<Duration>, usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let events = Events::default();
        let config = config
            .to_builder()
            .observer(events.observer())
            .build()
            .unwrap();
        let started = tokio::time::Instant::now();
        let outcome = run(config, answers).await;
        let delays = events.take().iter().map(|event| event.delay).collect();
        (outcome.returned - started, delays, outcome.attempts.len())
    })
}

fn failure() -> impl Strategy<Value = (u16, Option<u64>)> {
    (
        prop_oneof![Just(429u16), Just(503), Just(500)],
        proptest::option::of(0u64..120),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_total_wait_never_exceeds_the_deadline(
        attempts in 1u32..12,
        base in millis(0..3_000),
        jitter in jitter(),
        deadline in millis(1..60_000),
        seed in any::<u64>(),
        failures in proptest::collection::vec(failure(), 12),
    ) {
        let config = RetryConfig::builder()
            .max_attempts(attempts)
            .base_delay(base)
            .jitter(jitter)
            .deadline(deadline)
            .rng_seed(seed)
            .build()
            .unwrap();
        let cap = config.backoff().max().max(config.max_retry_after());
        let answers = failures
            .into_iter()
            .map(|(code, retry_after)| match retry_after {
                Some(secs) => status_with(code, "retry-after", &secs.to_string()),
                None => status(code),
            })
            .collect();
        let (elapsed, delays, made) = total_wait(config, answers);
        let waited: Duration = delays.iter().sum();
        prop_assert!(waited < deadline, "{waited:?} >= {deadline:?}");
        // The backend answers at once, so the call took the waits, each rounded up to
        // tokio's millisecond tick.
        let rounding = Duration::from_millis(delays.len() as u64);
        prop_assert!(elapsed >= waited && elapsed <= waited + rounding);
        prop_assert!(delays.iter().all(|delay| *delay <= cap));
        prop_assert!(made <= attempts as usize);
    }
}

proptest! {
    #[test]
    fn retry_after_seconds_round_trip(secs in any::<u32>()) {
        let now = SystemTime::UNIX_EPOCH;
        prop_assert_eq!(
            parse_retry_after(&secs.to_string(), now),
            Some(Duration::from_secs(secs.into()))
        );
        prop_assert_eq!(
            parse_retry_after(&format!("  {secs}\t"), now),
            Some(Duration::from_secs(secs.into()))
        );
    }

    #[test]
    fn retry_after_fractions_parse(whole in 0u32..100_000, millis in 0u32..1000) {
        let parsed = parse_retry_after(&format!("{whole}.{millis:03}"), SystemTime::UNIX_EPOCH)
            .unwrap();
        let exact = Duration::from_secs(whole.into()) + Duration::from_millis(millis.into());
        prop_assert!(parsed.abs_diff(exact) < Duration::from_micros(1));
    }

    #[test]
    fn retry_after_dates_round_trip(now in 0u64..8_000_000_000, ahead in 0u64..1_000_000) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now);
        let date = httpdate::fmt_http_date(now + Duration::from_secs(ahead));
        prop_assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(ahead)));
        // A date already past is no wait.
        let later = now + Duration::from_secs(ahead + 1);
        prop_assert_eq!(parse_retry_after(&date, later), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_ms_round_trips(millis in any::<u32>()) {
        prop_assert_eq!(
            parse_retry_after_ms(&millis.to_string()),
            Some(Duration::from_millis(millis.into()))
        );
    }

    #[test]
    fn parsers_never_panic_and_refuse_signs(text in ".{0,40}") {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let _ = parse_retry_after(&text, now);
        let _ = parse_retry_after_ms(&text);
        let negative = format!("-{}", text.trim_start());
        prop_assert_eq!(parse_retry_after_ms(&negative), None);
    }
}
