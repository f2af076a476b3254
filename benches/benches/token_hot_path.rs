//! Cached `get_token` on 1 and 2 threads, against a `tokio::sync::Mutex<Option<Token>>`
//! cache (what a straightforward port of the reference's locked cache looks like), and
//! during an IAM outage: the token inside its refresh-ahead window, the last refresh
//! failed, the manager backing off (`token_manager_backing_off`, where the hot path used
//! to take the refresh lock on every call).
//!
//! ```text
//! cargo bench -p evolution-benches --bench token_hot_path -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Each thread runs its own loop of calls; the time per call on 2 threads is that of the
//! slower thread, so perfect scaling gives the same figure as 1 thread.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use evolution_benches::{
    Bench, criterion_estimate_ns, demo_manager, machine, on_threads, on_threads_at,
};
use evolution_emulator::{Emulator, Fault, Route};
use evolution_token::{AccessToken, DEFAULT_REFRESH_BUFFER as BUFFER, TokenManager};

const GROUP: &str = "cached_get_token";

fn hot_path(c: &mut Criterion) {
    // The 2-thread figure is only meaningful on a quiet machine: say how quiet it was.
    println!("{}", machine());
    let bench = Bench::start();
    let mut group = c.benchmark_group(GROUP);

    for threads in [1, 2] {
        let tokens = bench.warm_manager();
        group.bench_function(format!("token_manager/{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                let tokens = tokens.clone();
                on_threads(threads, iters, move |iters| {
                    let tokens = tokens.clone();
                    Box::pin(async move {
                        for _ in 0..iters {
                            black_box(tokens.get_token().await.unwrap());
                        }
                    })
                })
            })
        });

        let (tokens, at, _down) = backing_off_manager(&bench);
        group.bench_function(
            format!("token_manager_backing_off/{threads}_threads"),
            |b| {
                b.iter_custom(|iters| {
                    let tokens = tokens.clone();
                    on_threads_at(threads, iters, Some(at), move |iters| {
                        let tokens = tokens.clone();
                        Box::pin(async move {
                            for _ in 0..iters {
                                black_box(tokens.get_token().await.unwrap());
                            }
                        })
                    })
                })
            },
        );

        let cache = Arc::new(tokio::sync::Mutex::new(Some(bench.token())));
        group.bench_function(format!("tokio_mutex_cache/{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                let cache = cache.clone();
                on_threads(threads, iters, move |iters| {
                    let cache = cache.clone();
                    Box::pin(async move {
                        for _ in 0..iters {
                            // The reference's check: valid while more than the buffer is left.
                            let guard = cache.lock().await;
                            let token: Option<AccessToken> =
                                guard.as_ref().filter(|t| t.expires_in() > BUFFER).cloned();
                            drop(guard);
                            black_box(token.unwrap());
                        }
                    })
                })
            })
        });
    }
    group.finish();

    let ns = |name: &str| criterion_estimate_ns(GROUP, name);
    for cache in [
        "token_manager",
        "token_manager_backing_off",
        "tokio_mutex_cache",
    ] {
        if let (Some(one), Some(two)) = (
            ns(&format!("{cache}/1_threads")),
            ns(&format!("{cache}/2_threads")),
        ) {
            println!(
                "{cache}: {one:.1} ns per call on 1 thread, {two:.1} ns on each of 2 threads ({:.2}×)",
                two / one
            );
        }
    }
    println!("{} (after)", machine());
}

/// A manager whose token is inside its refresh-ahead window while IAM is down, after six
/// failed refreshes in a row (so the backoff runs 15 to 30 s), and how far past its fetch
/// a paused clock must be set for that: the state a busy service is in for the whole of
/// an IAM outage. Its own emulator (kept alive by the caller), whose IAM answers 503 once
/// the token is fetched.
fn backing_off_manager(bench: &Bench) -> (TokenManager, Duration, Emulator) {
    let emulator: Emulator = bench
        .runtime
        .block_on(Emulator::builder().start())
        .expect("the emulator starts");
    let tokens = demo_manager(&emulator.auth_url())
        .fetch_attempts(1)
        .build()
        .expect("valid configuration");
    bench
        .runtime
        .block_on(tokens.get_token())
        .expect("the emulator issues a token");
    emulator.set_random_faults(vec![Fault::status(503)]);
    emulator.set_fault_probability(1.0, 1, &[Route::Iam]);

    let paused = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    let at = paused.block_on(async {
        let start = tokio::time::Instant::now();
        // An hour's token: refreshed ahead from 3300..3435 s, usable until 3570 s.
        tokio::time::advance(Duration::from_secs(3440)).await;
        for failures in 1..=6u32 {
            tokens.cached().expect("the token is still usable");
            while tokens.info().refresh_in_flight {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            if failures < 6 {
                // The longest backoff after this many failures: 1, 2, 4, 8, 16 s.
                tokio::time::sleep(Duration::from_secs(1 << (failures - 1))).await;
            }
        }
        // What every measured call sees: a usable token, and no refresh started.
        tokens.cached().expect("the token is still usable");
        assert!(!tokens.info().refresh_in_flight, "the manager backs off");
        start.elapsed()
    });
    (tokens, at, emulator)
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
