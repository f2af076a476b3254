//! Properties of the stack against the emulator, on tokio's paused clock: the token manager
//! never hands out a token inside its refresh buffer while IAM answers, and retries through
//! the client never exceed the attempts nor the shared budget.

use std::time::Duration;

use evolution_client::RetryConfig;
use evolution_emulator::{Fault, Route};
use evolution_testkit::{KEY, SECRET, builder, emulator_builder};
use evolution_token::{Credentials, TokenManager};
use futures_util::future::join_all;
use proptest::prelude::*;

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime")
}

/// Something that happens between two `get_token` calls.
#[derive(Debug, Clone)]
enum Step {
    /// Time passes (milliseconds).
    Advance(u64),
    /// A 401 made someone drop the cached token.
    Invalidate,
    /// IAM fails once or twice: fewer than one refresh's 3 attempts, so IAM still answers.
    Burst(u8),
}

fn step(ttl_ms: u64) -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0..ttl_ms * 3 / 2).prop_map(Step::Advance),
        1 => Just(Step::Invalidate),
        1 => (1u8..=2).prop_map(Step::Burst),
    ]
}

/// `(refresh buffer, ahead window beyond it, token lifetime, IAM latency)` in milliseconds.
/// IAM latency stays below half the token's usable life: an answer slower than the usable
/// life arrives already inside the buffer, which no client can prevent.
fn setting() -> impl Strategy<Value = (u64, u64, u64, u64)> {
    (
        1_000u64..120_000,
        0u64..600_000,
        prop_oneof![Just(false), Just(true)],
    )
        .prop_flat_map(|(buffer, ahead, short)| {
            let ttl = if short {
                // Shorter than the buffer: usable for half its life.
                (2_000..=buffer.max(2_000)).boxed()
            } else {
                (buffer + 5_000..7_200_000).boxed()
            };
            (Just(buffer), Just(ahead), ttl, 0u64..3_000).prop_map(
                move |(buffer, ahead, ttl, latency)| {
                    let usable = if ttl > buffer { ttl - buffer } else { ttl / 2 };
                    (buffer, ahead, ttl, latency.min(usable / 2))
                },
            )
        })
}

proptest! {
    #![proptest_config(crate::config(48))]

    /// At any time, a token from `get_token` has more than the refresh buffer left (more
    /// than half its lifetime, for a lifetime shorter than the buffer), while IAM answers.
    #[test]
    fn no_token_inside_the_buffer_while_iam_answers(
        (buffer_ms, ahead_ms, ttl_ms, latency_ms) in setting(),
        steps in proptest::collection::vec(step(7_200_000), 1..40),
    ) {
        let buffer = Duration::from_millis(buffer_ms);
        let ttl = Duration::from_millis(ttl_ms);
        // The lifetime IAM reports is whole seconds.
        let lifetime = Duration::from_secs(ttl.as_secs().max(1));
        let floor = if lifetime > buffer { buffer } else { lifetime / 2 };
        paused_runtime().block_on(async {
            let emu = emulator_builder()
                .ttl(lifetime)
                .latency(Route::Iam, Duration::from_millis(latency_ms))
                .start()
                .await
                .unwrap();
            let tokens = TokenManager::builder(Credentials::new(KEY, SECRET))
                .auth_url(emu.auth_url())
                .refresh_buffer(buffer)
                .refresh_ahead(buffer + Duration::from_millis(ahead_ms))
                .build()
                .unwrap();
            for step in steps {
                match step {
                    Step::Advance(ms) => {
                        tokio::time::advance(Duration::from_millis(ms % (ttl_ms * 3 / 2 + 1)))
                            .await;
                    }
                    Step::Invalidate => tokens.invalidate(),
                    Step::Burst(n) if emu.pending_faults(Route::Iam) == 0 => {
                        for _ in 0..n {
                            emu.push_fault(Route::Iam, Fault::status(503));
                        }
                    }
                    Step::Burst(_) => {}
                }
                let token = tokens.get_token().await.unwrap();
                let left = token.expires_in();
                prop_assert!(
                    left > floor,
                    "{left:?} left, buffer {buffer:?}, lifetime {lifetime:?}, {:?}",
                    tokens.info()
                );
                // A background refresh started by this call finishes before time jumps: a jump
                // while it is in flight would be an IAM slower than the token's usable life,
                // whose answer is inside the buffer on arrival (and still the best token).
                while tokens.info().refresh_in_flight {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            Ok(())
        })?;
    }
}

proptest! {
    #![proptest_config(crate::config(16))]

    /// N concurrent calls against an API that always answers 503: no call makes more than
    /// `max_attempts` attempts, and all of them together no more than N plus what the shared
    /// `TpsBudget` allows (`RetryConfig::budget_retries`).
    #[test]
    fn retries_never_exceed_attempts_nor_budget(
        calls in 1u64..120,
        attempts in 1u32..6,
        ratio in prop_oneof![Just(0.0f32), Just(0.1), Just(0.2), Just(0.5), Just(1.0), Just(2.0)],
        min_per_sec in 0u32..20,
    ) {
        let config = RetryConfig::builder()
            .max_attempts(attempts)
            .base_delay(Duration::from_millis(1))
            .max_delay(Duration::from_millis(5))
            .budget_retry_ratio(ratio)
            .budget_min_per_sec(min_per_sec)
            .build()
            .unwrap();
        let bound = (calls * u64::from(attempts)).min(calls + config.budget_retries(calls));
        let made = paused_runtime().block_on(async {
            let emu = emulator_builder().start().await.unwrap();
            emu.set_random_faults(vec![Fault::status(503)]);
            emu.set_fault_probability(1.0, 1, &[Route::Chat]);
            let llm = builder(&emu)
                .retry(config)
                .build()
                .unwrap();
            let results = join_all((0..calls).map(|i| llm.invoke(format!("q{i}")))).await;
            for result in results {
                assert_eq!(result.unwrap_err().status().map(|s| s.as_u16()), Some(503));
            }
            assert_eq!(llm.stats().retries, emu.stats().chat_requests - calls);
            emu.stats().chat_requests
        });
        prop_assert!(made >= calls);
        prop_assert!(made <= bound, "{made} attempts > {bound}");
    }
}
