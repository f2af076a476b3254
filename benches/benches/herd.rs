//! The thundering herd: 10,000 concurrent `get_token` callers on a cold cache, IAM
//! answering in 50 ms. Every herd must cause exactly one IAM request (asserted), and
//! serving all of them should take about one IAM round trip. Two references are measured
//! in the same run: one caller on a cold cache (the round trip as a caller sees it) and
//! the same 10,000 callers on a warm cache (what spawning and joining the tasks costs by
//! itself). The summary prints the herd's time over 50 ms and over the single caller's.
//!
//! ```text
//! cargo bench -p evolution-benches --bench herd -- --warm-up-time 1 --measurement-time 3
//! ```

// Benchmarks measure real elapsed time.
#![allow(clippy::disallowed_methods)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use evolution_benches::{Bench, criterion_estimate_ns, demo_manager, machine};
use evolution_emulator::Route;
use evolution_token::TokenManager;

const CALLERS: usize = 10_000;
const IAM_LATENCY: Duration = Duration::from_millis(50);
const GROUP: &str = "herd";
const HERD: &str = "10000_callers_cold_cache";
const ONE: &str = "1_caller_cold_cache";
const WARM: &str = "10000_callers_warm_cache";

fn herd(c: &mut Criterion) {
    println!("{}", machine());
    let bench = Bench::start();
    bench.emulator.set_latency(Route::Iam, IAM_LATENCY);
    // One connection pool for every manager, as in a client: the herd measures the
    // cache, not TLS set-up (loopback http has none anyway).
    let http = reqwest::Client::new();
    let herds = AtomicU64::new(0);
    let in_flight_max = AtomicU64::new(0);

    let cold = || {
        demo_manager(&bench.emulator.auth_url())
            .http_client(http.clone())
            .build()
            .expect("valid configuration")
    };
    // `callers` concurrent get_token calls on `tokens`, timed from the first spawn to the
    // last answer; all must get the same token.
    let run = |tokens: &TokenManager, callers: usize| {
        bench.runtime.block_on(async {
            let start = Instant::now();
            let tasks: Vec<_> = (0..callers)
                .map(|_| {
                    let tokens = tokens.clone();
                    tokio::spawn(async move { tokens.get_token().await })
                })
                .collect();
            let mut first = None;
            for task in tasks {
                let token = task.await.expect("no caller panics").expect("a token");
                let first = first.get_or_insert_with(|| token.clone());
                assert!(token.same_as(first), "every caller gets the same token");
            }
            start.elapsed()
        })
    };

    let mut group = c.benchmark_group(GROUP);
    group.sample_size(10);
    group.bench_function(HERD, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // A cold cache per herd, built outside the timed part.
                let tokens = cold();
                bench.emulator.reset_stats();
                total += run(&tokens, CALLERS);
                let stats = bench.emulator.stats();
                assert_eq!(
                    stats.iam_requests, 1,
                    "one IAM request per herd of {CALLERS}"
                );
                in_flight_max.fetch_max(stats.iam_in_flight_max, Ordering::Relaxed);
                herds.fetch_add(1, Ordering::Relaxed);
            }
            total
        })
    });
    // The IAM round trip as a caller sees it: one caller, cold cache.
    group.bench_function(ONE, |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run(&cold(), 1)).sum())
    });
    // What spawning and joining 10,000 tasks costs by itself: the same herd on a warm cache.
    let warm = bench.warm_manager();
    group.bench_function(WARM, |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run(&warm, CALLERS)).sum())
    });
    group.finish();

    let herds = herds.load(Ordering::Relaxed);
    println!(
        "herd: {herds} herds of {CALLERS} callers, exactly 1 IAM request each (asserted), \
         IAM in flight at most {}",
        in_flight_max.load(Ordering::Relaxed)
    );
    let ms = |function| criterion_estimate_ns(GROUP, function).map(|ns| ns / 1e6);
    if let (Some(herd), Some(one), Some(warm)) = (ms(HERD), ms(ONE), ms(WARM)) {
        let nominal = IAM_LATENCY.as_secs_f64() * 1e3;
        println!(
            "herd: {herd:.1} ms to serve {CALLERS} callers = {:.2} × the {nominal:.0} ms IAM latency, \
             {:.2} × one caller's cold fetch ({one:.1} ms); spawning and joining {CALLERS} tasks \
             on a warm cache takes {warm:.1} ms",
            herd / nominal,
            herd / one,
        );
    }
}

criterion_group!(benches, herd);
criterion_main!(benches);
