//! What the key pool's strategy costs per call, in memory (issue 19: ≤ 200 ns added with 8
//! deployments over a single key).
//!
//! Every deployment is the same in-memory service, a `service_fn` answering an empty 200 at
//! once, so the figures are the pool's own work. One call at a time, made ready then
//! called, on 1 thread and on 2 threads at once sharing the pool (as a client's threads
//! share theirs); the request is the client's chat request (method, URI and a chat body
//! of about 190 bytes, no headers), cloned for each call. Cases:
//!
//! - `single_key`: the service alone, no pool;
//! - `pool_1`: through `evolution_pool::Pool` with 1 deployment;
//! - `pool_8/STRATEGY`: 8 deployments under `ordered`, `round_robin`, `weighted` and
//!   `least_loaded`;
//! - `pool_8_rpm/round_robin`: 8 deployments each with an RPM limit (`u32::MAX` a minute,
//!   never reached): the limiter's cost;
//! - `pool_8_rpm_tpm/round_robin`: the same with a TPM limit too (`u32::MAX` a minute: at
//!   about 520 estimated tokens a call, 8 deployments refill over 500,000 calls a second and
//!   start with a minute's worth, far above what one or two threads can call), so each
//!   call also estimates its tokens from the body.
//!
//! Then `pool_strategy_parts`, the operations a call through the pool is made of, each
//! alone, for where the time goes: a clock read (`tokio_now`: this binary has tokio's
//! `test-util`, as every bench and test of the workspace does, which puts a lock around it;
//! `std_now` is the read without it, as in a user's build), a `Duration`'s nanoseconds as
//! `f64` (`nanos_u128_as_f64`) against `as_secs_f64`, an `exp`, an uncontended mutex,
//! `random_range`, inserting a `Served`-like value into a response's extensions (and
//! dropping it), cloning the request, `estimate_tokens` of the chat body, and `json_scan`
//! (reading the body with `serde::de::IgnoredAny`: what any estimate from the body costs
//! at least).
//!
//! The summary prints each case's time per call and what it adds over `single_key` (the
//! target) and over `pool_1` (the strategy alone).
//!
//! ```text
//! cargo bench -p evolution-benches --bench pool_strategy -- --warm-up-time 1 --measurement-time 3
//! ```

// Benchmarks measure real elapsed time.
#![allow(clippy::disallowed_methods)]

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use evolution_benches::calls::{chat_body, chat_request};
use evolution_benches::{ThreadWork, criterion_estimate_ns, machine, on_threads};
use evolution_pool::{Pool, PoolMember, RateLimits, Strategy, estimate_tokens};
use http::{Request, Response, Uri};
use serde::de::IgnoredAny;
use tower::util::ServiceFn;
use tower::{Service, ServiceExt, service_fn};

const GROUP: &str = "pool_strategy";
const PARTS: &str = "pool_strategy_parts";
/// The issue's target for the pool with 8 deployments, over a single key.
const TARGET_NS: f64 = 200.0;
const STRATEGIES: [Strategy; 4] = [
    Strategy::Ordered,
    Strategy::RoundRobin,
    Strategy::Weighted,
    Strategy::LeastLoaded,
];

type Answer = fn(Request<Bytes>) -> Ready<Result<Response<()>, Infallible>>;
type Member = ServiceFn<Answer>;

/// A deployment that answers an empty 200 at once.
fn member() -> Member {
    service_fn((|_request| ready(Ok(Response::new(())))) as Answer)
}

fn pool(deployments: usize, strategy: Strategy, limits: Limits) -> Pool<Member> {
    let members = (0..deployments).map(|i| {
        let member = PoolMember::new(format!("deployment-{i}"), member());
        match limits {
            Limits::None => member,
            Limits::Rpm => member.limits(RateLimits::new(NonZeroU32::new(u32::MAX), None)),
            Limits::RpmTpm => member.limits(RateLimits::new(
                NonZeroU32::new(u32::MAX),
                NonZeroU32::new(u32::MAX),
            )),
        }
    });
    Pool::builder(members)
        .strategy(strategy)
        .build()
        .expect("a valid pool")
}

#[derive(Clone, Copy)]
enum Limits {
    None,
    Rpm,
    RpmTpm,
}

/// The request a client sends: method, URI and the chat body, no headers.
fn request() -> Request<Bytes> {
    chat_request(
        &Uri::from_static("http://127.0.0.1/v1/chat/completions"),
        &chat_body(),
        None,
    )
}

/// `iters` sequential calls through `service`, each made ready first.
async fn sequential<S>(mut service: S, iters: u64, request: Request<Bytes>)
where
    S: Service<Request<Bytes>, Response = Response<()>>,
    S::Error: Debug,
{
    for _ in 0..iters {
        let response = service
            .ready()
            .await
            .expect("ready")
            .call(request.clone())
            .await;
        black_box(response.expect("the deployment answers"));
    }
}

/// What each thread of a case runs, given its number of calls.
type Work = Arc<dyn Fn(u64) -> ThreadWork + Send + Sync>;

/// A case: `service`, shared by the threads through clones.
fn work<S>(service: S) -> Work
where
    S: Service<Request<Bytes>, Response = Response<()>> + Clone + Send + Sync + 'static,
    S::Error: Debug,
    S::Future: 'static,
{
    let request = request();
    Arc::new(move |iters| Box::pin(sequential(service.clone(), iters, request.clone())))
}

fn cases(c: &mut Criterion) {
    println!("{}", machine());
    let mut cases: Vec<(String, Work)> = vec![
        ("single_key".into(), work(member())),
        (
            "pool_1".into(),
            work(pool(1, Strategy::Ordered, Limits::None)),
        ),
    ];
    for strategy in STRATEGIES {
        cases.push((
            format!("pool_8/{strategy}"),
            work(pool(8, strategy, Limits::None)),
        ));
    }
    cases.push((
        "pool_8_rpm/round_robin".into(),
        work(pool(8, Strategy::RoundRobin, Limits::Rpm)),
    ));
    cases.push((
        "pool_8_rpm_tpm/round_robin".into(),
        work(pool(8, Strategy::RoundRobin, Limits::RpmTpm)),
    ));

    let mut group = c.benchmark_group(GROUP);
    for threads in [1, 2] {
        for (name, work) in &cases {
            group.bench_function(format!("{name}/{threads}_threads"), |b| {
                b.iter_custom(|iters| {
                    let work = Arc::clone(work);
                    on_threads(threads, iters, move |iters| work(iters))
                })
            });
        }
    }
    group.finish();
    summary(
        &cases
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>(),
    );
}

/// Runs `step` `iters` times on one current-thread runtime (the pool's clock is tokio's).
fn on_runtime<F: Fn() + Send + Sync + 'static>(iters: u64, step: F) -> Duration {
    let step = Arc::new(step);
    on_threads(1, iters, move |iters| {
        let step = Arc::clone(&step);
        Box::pin(async move {
            for _ in 0..iters {
                step();
            }
        })
    })
}

/// What [`evolution_pool::Served`] holds: a name and an optional limits handle.
#[derive(Clone)]
struct ServedLike {
    _deployment: Arc<str>,
    _tokens: Option<(Arc<()>, u32)>,
}

/// The operations a pool call is made of, each alone, so that a case's time can be split
/// into them (the summary of the report does it by counting them in `crates/pool/src`).
fn parts(c: &mut Criterion) {
    let mut group = c.benchmark_group(PARTS);
    group.bench_function("tokio_now", |b| {
        b.iter_custom(|iters| {
            on_runtime(iters, || {
                black_box(tokio::time::Instant::now());
            })
        })
    });
    group.bench_function("std_now", |b| {
        b.iter(|| black_box(std::time::Instant::now()))
    });
    let elapsed = Duration::from_nanos(1_234_567);
    group.bench_function("nanos_u128_as_f64", |b| {
        b.iter(|| black_box(black_box(elapsed).as_nanos() as f64))
    });
    group.bench_function("as_secs_f64", |b| {
        b.iter(|| black_box(black_box(elapsed).as_secs_f64()))
    });
    group.bench_function("exp", |b| b.iter(|| black_box(black_box(-0.0123f64).exp())));
    let mutex = Mutex::new((0.0f64, 0u64));
    group.bench_function("mutex_lock", |b| {
        b.iter(|| {
            let mut guard = mutex.lock().unwrap_or_else(|e| e.into_inner());
            guard.1 += 1;
            black_box(&*guard);
        })
    });
    group.bench_function("random_range", |b| {
        b.iter(|| black_box(rand::random_range(0..black_box(8u32))))
    });
    let served = ServedLike {
        _deployment: Arc::from("deployment-0"),
        _tokens: None,
    };
    group.bench_function("served_extension", |b| {
        b.iter(|| {
            let mut response = Response::new(());
            response.extensions_mut().insert(served.clone());
            black_box(response)
        })
    });
    let template = request();
    group.bench_function("request_clone", |b| b.iter(|| black_box(template.clone())));
    let body = chat_body();
    group.bench_function("estimate_tokens", |b| {
        b.iter(|| black_box(estimate_tokens(black_box(&body))))
    });
    // What reading the body costs at least: a scan that builds nothing.
    group.bench_function("json_scan", |b| {
        b.iter(|| black_box(serde_json::from_slice::<IgnoredAny>(black_box(&body)).is_ok()))
    });
    group.finish();
    println!();
    for part in PART_NAMES {
        if let Some(ns) = criterion_estimate_ns(PARTS, part) {
            println!("{PARTS}: {part:<18} {ns:>8.1} ns");
        }
    }
}

const PART_NAMES: [&str; 11] = [
    "tokio_now",
    "std_now",
    "nanos_u128_as_f64",
    "as_secs_f64",
    "exp",
    "mutex_lock",
    "random_range",
    "served_extension",
    "request_clone",
    "estimate_tokens",
    "json_scan",
];

/// Each case's time per call, and what it adds over a single key and over `pool_1`.
fn summary(names: &[&str]) {
    for threads in [1, 2] {
        let ns = |name: &str| criterion_estimate_ns(GROUP, &format!("{name}/{threads}_threads"));
        let (Some(single), pool_1) = (ns("single_key"), ns("pool_1")) else {
            continue;
        };
        println!("\n{GROUP} on {threads} thread(s), ns per call:");
        println!("| case                        | ns/call | over single_key | over pool_1 |");
        println!("|-----------------------------|--------:|----------------:|------------:|");
        for name in names {
            let Some(case) = ns(name) else { continue };
            let over_pool_1 = pool_1.map_or("-".to_owned(), |p| format!("{:+.0}", case - p));
            let target = if name.starts_with("pool_8/") {
                if case - single <= TARGET_NS {
                    " (≤ 200: met)"
                } else {
                    " (≤ 200: missed)"
                }
            } else {
                ""
            };
            println!(
                "| {name:<27} | {case:>7.0} | {:>+15.0} | {over_pool_1:>11} |{target}",
                case - single
            );
        }
    }
}

criterion_group!(benches, cases, parts);
criterion_main!(benches);
