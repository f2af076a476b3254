//! Cached `get_token` on 1 and 2 threads, against a `tokio::sync::Mutex<Option<Token>>`
//! cache (what a straightforward port of the reference's locked cache looks like).
//!
//! ```text
//! cargo bench -p evolution-benches --bench token_hot_path -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Each thread runs its own loop of calls; the time per call on 2 threads is that of the
//! slower thread, so perfect scaling gives the same figure as 1 thread.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use evolution_benches::{Bench, criterion_estimate_ns, machine, on_threads};
use evolution_token::{AccessToken, DEFAULT_REFRESH_BUFFER as BUFFER};

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
    for cache in ["token_manager", "tokio_mutex_cache"] {
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

criterion_group!(benches, hot_path);
criterion_main!(benches);
