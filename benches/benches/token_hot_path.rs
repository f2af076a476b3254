//! Cached `get_token` on 1 and 2 threads, against a `tokio::sync::Mutex<Option<Token>>`
//! cache (what a straightforward port of the reference's locked cache looks like).
//!
//! `cargo bench -p evolution-benches --bench token_hot_path`

// Benchmarks measure real elapsed time.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use evolution_benches::Bench;
use evolution_token::{AccessToken, DEFAULT_REFRESH_BUFFER as BUFFER};

/// Runs `per_thread` on `threads` threads at once, each inside its own current-thread
/// runtime for the whole loop, and returns the wall time of the slowest.
fn on_threads<F>(threads: usize, iters: u64, per_thread: F) -> Duration
where
    F: Fn(u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> + Send + Sync + 'static,
{
    let per_thread = Arc::new(per_thread);
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let per_thread = per_thread.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                barrier.wait();
                let start = Instant::now();
                runtime.block_on(per_thread(iters));
                start.elapsed()
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .max()
        .unwrap()
}

fn hot_path(c: &mut Criterion) {
    let bench = Bench::start();
    let mut group = c.benchmark_group("cached_get_token");

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
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
