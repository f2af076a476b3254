//! What the middleware costs.
//!
//! 1. `stack_loopback`: requests per second at 64 in flight against the loopback emulator
//!    (the release binary in its own process when built, else the library on a runtime of
//!    its own — the first lines say which), all in one run:
//!    - `bare_reqwest`: `reqwest` posting the chat body (encoded once) with fixed
//!      `Authorization` and `Content-Type` headers and reading the answer's bytes, the URL
//!      given as text as in reqwest's examples (reqwest parses it for every request);
//!    - `bare_reqwest_url`: the same posting to a URL parsed once, the cheapest way to
//!      call reqwest (`HttpTransport` reuses its thread's recent parses likewise);
//!    - `transport`: the same through `HttpTransport` alone (the stack's bottom);
//!    - `one_key`: `stack::authenticated_over` the same transport — auth, sensitive
//!      headers, default content type, trace, per-attempt timeout;
//!    - `full_stack`: `EvolutionInference::service()` with a backup key and a total
//!      timeout of twice the per-attempt one (so both timers are live): metrics, total
//!      timeout, retry, attempt counter, fallback, and one `one_key` stack per key. The
//!      requests are built as the client builds them: method, URI and body, no headers;
//!    - `send`: the same requests through `EvolutionInference::send` on the same client,
//!      beside `full_stack`: the call borrows its thread's instance of the stack, where
//!      `service()` clones the boxed stack for each call;
//!    - `bare_reqwest_json`: what `invoke` does, with `reqwest` and `serde` alone: encode
//!      the request from a struct, post it with a fixed token, decode the answer into
//!      `ChatResponse` and take the first choice's text; `bare_reqwest_json_url` the same
//!      to a URL parsed once;
//!    - `invoke`: `EvolutionInference::invoke` on the same client as `full_stack`;
//!    - `invoke_default`: the same on a client with the builder's defaults (one key, the
//!      default retries, no total timeout).
//!
//!    The summary prints each rate, its ratio to its baseline (`bare_reqwest`, and
//!    `bare_reqwest_json` for `invoke`; target ≥ 95%) and to the baseline's parsed-URL
//!    form, and the client process's CPU time per request (user + system, from
//!    `/proc/self/stat`; the server is another process). Then an interleaved check runs
//!    each pair alternately for a few rounds and prints the median ratio, which a change of
//!    machine load between two criterion benchmarks does not skew.
//! 2. `stack_cpu`: time per call of the layers over an in-memory service (a `service_fn`
//!    answering a ready 200 with a small body), one call at a time, on 1 thread and on 2
//!    threads at once, each thread with its own instance: the bare service, `one_key`, and
//!    the client's own full stack over it (`EvolutionInferenceBuilder::build_service_over`,
//!    configured as in `loopback`). Each is made ready and called, as the client calls the
//!    instance its thread borrows; `full_stack_cloned` instead clones the stack for each
//!    call (`oneshot`), as a user of `service()` would. The summary prints full stack
//!    minus bare (target ≤ 2 µs).
//!
//! ```text
//! cargo build --release -p evolution-emulator
//! cargo bench -p evolution-benches --bench stack_overhead -- --warm-up-time 1 --measurement-time 3
//! ```

// Benchmarks measure real elapsed time.
#![allow(clippy::disallowed_methods)]

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use evolution_benches::calls::{
    BoxedCall, IN_FLIGHT, PROMPT, TIMEOUT, Target, Warm, bare_call, bare_json_call, chat_body,
    chat_request, client_builder, default_client_builder, in_flight, invoke_call, send_call,
    service_call,
};
use evolution_benches::{
    Server, bench_mode, criterion_estimate_ns, machine, on_threads, process_cpu_time, runtime,
};
use evolution_client::stack::{EvolutionService, authenticated_over};
use evolution_client::{Body, HttpTransport};
use evolution_emulator::{DEMO_KEY_ID, DEMO_SECRET};
use evolution_token::{BoxError, Credentials, TokenManager};
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use tokio::runtime::Runtime;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt, service_fn};

const LOOPBACK: &str = "stack_loopback";
const CPU: &str = "stack_cpu";

/// Client CPU time and requests per benchmark, over every sample (warm-up included), in
/// the order the benchmarks ran.
#[derive(Default)]
struct CpuLedger(RefCell<Vec<(String, Duration, u64)>>);

impl CpuLedger {
    fn add(&self, name: &str, cpu: Duration, requests: u64) {
        let mut entries = self.0.borrow_mut();
        match entries.iter_mut().find(|(n, ..)| n == name) {
            Some(entry) => {
                entry.1 += cpu;
                entry.2 += requests;
            }
            None => entries.push((name.to_owned(), cpu, requests)),
        }
    }

    /// Each benchmark that ran, with its client CPU time per request in microseconds.
    fn per_request(&self) -> Vec<(String, f64)> {
        self.0
            .borrow()
            .iter()
            .filter(|(_, _, requests)| *requests > 0)
            .map(|(name, cpu, requests)| (name.clone(), cpu.as_secs_f64() * 1e6 / *requests as f64))
            .collect()
    }
}

/// Benchmarks `call` at `IN_FLIGHT` calls in flight, recording the client CPU it used.
fn bench_call<M, F>(
    group: &mut BenchmarkGroup<'_, M>,
    runtime: &Runtime,
    ledger: &CpuLedger,
    name: &str,
    call: F,
) where
    M: criterion::measurement::Measurement<Value = Duration>,
    F: Fn() -> BoxedCall + Clone + Send + 'static,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let cpu = process_cpu_time();
            let elapsed = in_flight(runtime, iters, call.clone());
            ledger.add(name, process_cpu_time() - cpu, iters);
            elapsed
        })
    });
}

/// Rounds of the interleaved ratio check, and calls per case per round.
const ROUNDS: usize = 10;
const ROUND_CALLS: u64 = 20_000;

/// Bare and full stack alternately (ABBA order, so a drift in machine load hits both
/// alike), `ROUNDS` times `ROUND_CALLS` calls each: the median of the per-round ratios is
/// less sensitive to a shared machine than two criterion runs a few seconds apart.
fn interleaved<B, S>(runtime: &Runtime, label: &str, bare: B, stack: S)
where
    B: Fn() -> BoxedCall + Clone + Send + 'static,
    S: Fn() -> BoxedCall + Clone + Send + 'static,
{
    let mut ratios = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let rate = |elapsed: Duration| ROUND_CALLS as f64 / elapsed.as_secs_f64();
        let (bare_rate, stack_rate) = if round % 2 == 0 {
            let b = rate(in_flight(runtime, ROUND_CALLS, bare.clone()));
            (b, rate(in_flight(runtime, ROUND_CALLS, stack.clone())))
        } else {
            let s = rate(in_flight(runtime, ROUND_CALLS, stack.clone()));
            (rate(in_flight(runtime, ROUND_CALLS, bare.clone())), s)
        };
        ratios.push(stack_rate / bare_rate);
    }
    ratios.sort_by(f64::total_cmp);
    let median = (ratios[(ROUNDS - 1) / 2] + ratios[ROUNDS / 2]) / 2.0;
    println!(
        "stack_loopback interleaved: {label} over {ROUNDS} rounds of {ROUND_CALLS} calls: \
         median {:.1}% (min {:.1}%, max {:.1}%)",
        100.0 * median,
        100.0 * ratios[0],
        100.0 * ratios[ROUNDS - 1],
    );
}

fn loopback(c: &mut Criterion) {
    println!("{}", machine());
    let server = Server::start();
    println!("{}", server.describe());
    let runtime = runtime(2);
    println!("client: its own runtime, 2 worker threads; {IN_FLIGHT} calls in flight");

    let Warm {
        client,
        bearer,
        uri,
    } = Warm::new(&server, &runtime);
    let body = chat_body();
    let ledger = CpuLedger::default();

    let [text, parsed] = Target::both(&uri);
    let bare = |url: &Target| {
        bare_call(
            reqwest::Client::new(),
            url.clone(),
            body.clone(),
            bearer.clone(),
        )
    };
    let (bare_text, bare_parsed) = (bare(&text), bare(&parsed));
    let bare_json =
        |url: &Target| bare_json_call(reqwest::Client::new(), url.clone(), bearer.clone());
    let (json_text, json_parsed) = (bare_json(&text), bare_json(&parsed));
    let transport = HttpTransport::new(reqwest::Client::new());
    let cases = [
        (
            "transport",
            BoxCloneSyncService::new(transport.clone()),
            Some(bearer),
        ),
        (
            "one_key",
            authenticated_over(transport, client.token_manager().clone(), TIMEOUT),
            None,
        ),
        ("full_stack", client.service(), None),
    ];
    let send = send_call(client.clone(), uri.clone(), body.clone());
    let invoke = invoke_call(client.clone());
    let default_client = default_client_builder(&server)
        .build()
        .expect("a valid client");
    runtime
        .block_on(default_client.invoke(PROMPT))
        .expect("the default client works");
    let invoke_default = invoke_call(default_client);

    let mut group = c.benchmark_group(LOOPBACK);
    group.throughput(Throughput::Elements(1));
    // Few, large samples: every sample must keep all 64 calls in flight.
    group.sample_size(10);
    bench_call(
        &mut group,
        &runtime,
        &ledger,
        "bare_reqwest",
        bare_text.clone(),
    );
    bench_call(
        &mut group,
        &runtime,
        &ledger,
        "bare_reqwest_url",
        bare_parsed.clone(),
    );
    for (name, service, bearer) in cases {
        let call = service_call(service, uri.clone(), body.clone(), bearer);
        bench_call(&mut group, &runtime, &ledger, name, call);
    }
    bench_call(&mut group, &runtime, &ledger, "send", send.clone());
    bench_call(
        &mut group,
        &runtime,
        &ledger,
        "bare_reqwest_json",
        json_text.clone(),
    );
    bench_call(
        &mut group,
        &runtime,
        &ledger,
        "bare_reqwest_json_url",
        json_parsed.clone(),
    );
    bench_call(&mut group, &runtime, &ledger, "invoke", invoke.clone());
    bench_call(
        &mut group,
        &runtime,
        &ledger,
        "invoke_default",
        invoke_default.clone(),
    );
    group.finish();
    assert_eq!(
        client.stats().fallback_switches,
        0,
        "the backup key stayed idle"
    );

    let ran = ledger.per_request();
    if !bench_mode() || ran.is_empty() {
        return;
    }
    let ran_ns = |name: &str| {
        ran.iter()
            .any(|(n, _)| n == name)
            .then(|| criterion_estimate_ns(LOOPBACK, name))
            .flatten()
    };
    println!(
        "\n| {LOOPBACK:<21} |   req/s | baseline          | of it  | of its _url | client CPU µs/req |"
    );
    println!(
        "|-----------------------|--------:|-------------------|-------:|------------:|------------------:|"
    );
    for (name, cpu) in &ran {
        if let Some(ns) = criterion_estimate_ns(LOOPBACK, name) {
            let baseline = if name.starts_with("bare_reqwest_json") || name.starts_with("invoke") {
                "bare_reqwest_json"
            } else {
                "bare_reqwest"
            };
            let of = |baseline: &str| {
                ran_ns(baseline).map_or("-".to_owned(), |baseline_ns| {
                    format!("{:.1}%", 100.0 * baseline_ns / ns)
                })
            };
            let (of_it, of_url) = (of(baseline), of(&format!("{baseline}_url")));
            println!(
                "| {name:<21} | {:>7.0} | {baseline:<17} | {of_it:>6} | {of_url:>11} | {cpu:>17.1} |",
                1e9 / ns
            );
        }
    }
    let full = service_call(client.service(), uri, body, None);
    let ran_both = |stack: &str, baseline: &str| {
        let both = ran_ns(stack).is_some() && ran_ns(baseline).is_some();
        both.then(|| format!("{stack} / {baseline}"))
    };
    if let Some(label) = ran_both("send", "full_stack") {
        interleaved(&runtime, &label, full.clone(), send);
    }
    if let Some(label) = ran_both("full_stack", "bare_reqwest") {
        interleaved(&runtime, &label, bare_text, full.clone());
    }
    if let Some(label) = ran_both("full_stack", "bare_reqwest_url") {
        interleaved(&runtime, &label, bare_parsed, full);
    }
    if let Some(label) = ran_both("invoke", "bare_reqwest_json") {
        interleaved(&runtime, &label, json_text.clone(), invoke.clone());
    }
    if let Some(label) = ran_both("invoke_default", "bare_reqwest_json") {
        interleaved(&runtime, &label, json_text, invoke_default);
    }
    if let Some(label) = ran_both("invoke", "bare_reqwest_json_url") {
        interleaved(&runtime, &label, json_parsed, invoke);
    }
    drop(server);
}

type Inner = fn(Request<Bytes>) -> Ready<Result<Response<Body>, BoxError>>;

/// A ready 200 with a small JSON body.
fn in_memory() -> tower::util::ServiceFn<Inner> {
    service_fn(
        (|_request| {
            let body = Full::new(Bytes::from_static(br#"{"choices":[]}"#))
                .map_err(|never: Infallible| match never {})
                .boxed();
            ready(Ok(Response::new(body)))
        }) as Inner,
    )
}

/// How a case calls its stack.
#[derive(Clone, Copy)]
enum Calls {
    /// Readiness, then a call, on the thread's own instance: as `EvolutionInference`
    /// calls the instance its thread borrows.
    Held,
    /// A clone of the stack per call, `oneshot`: as a user of `service()` would.
    Cloned,
}

/// `iters` sequential calls through `service`.
async fn sequential(mut service: EvolutionService, iters: u64, calls: Calls) {
    let (uri, body) = (
        Uri::from_static("http://127.0.0.1/v1/chat/completions"),
        chat_body(),
    );
    for _ in 0..iters {
        let request = chat_request(&uri, &body, None);
        let response = match calls {
            Calls::Held => service.ready().await.expect("ready").call(request).await,
            Calls::Cloned => service.clone().oneshot(request).await,
        };
        black_box(response.expect("the service answers"));
    }
}

fn warm(auth_url: &str, key_id: &str, secret: &str) -> TokenManager {
    let tokens = TokenManager::builder(Credentials::new(key_id, secret))
        .auth_url(auth_url)
        .build()
        .expect("valid configuration");
    runtime(1).block_on(tokens.get_token()).expect("a token");
    tokens
}

fn cpu(c: &mut Criterion) {
    let server = Server::start();
    let primary = warm(&server.auth_url(), DEMO_KEY_ID, DEMO_SECRET);
    // The client's own stack over the in-memory service, configured as in `loopback`.
    let full = client_builder(&server)
        .build_service_over(in_memory())
        .expect("a valid configuration");
    // One call fetches the primary key's token (from the emulator's IAM).
    let (uri, body) = (
        Uri::from_static("http://127.0.0.1/v1/chat/completions"),
        chat_body(),
    );
    runtime(1)
        .block_on(full.clone().oneshot(chat_request(&uri, &body, None)))
        .expect("the stack answers");
    // The bare service is boxed like the others, so every case pays the same box.
    let services: [(&str, EvolutionService, Calls); 4] = [
        (
            "bare_service",
            BoxCloneSyncService::new(in_memory()),
            Calls::Held,
        ),
        (
            "one_key",
            authenticated_over(in_memory(), primary.clone(), TIMEOUT),
            Calls::Held,
        ),
        ("full_stack", full.clone(), Calls::Held),
        ("full_stack_cloned", full, Calls::Cloned),
    ];

    let mut group = c.benchmark_group(CPU);
    for threads in [1, 2] {
        for (name, service, calls) in &services {
            group.bench_function(format!("{name}/{threads}_threads"), |b| {
                b.iter_custom(|iters| {
                    let (service, calls) = (service.clone(), *calls);
                    on_threads(threads, iters, move |iters| {
                        Box::pin(sequential(service.clone(), iters, calls))
                    })
                })
            });
        }
    }
    group.finish();

    let ns = |name: &str| criterion_estimate_ns(CPU, name);
    for threads in [1, 2] {
        for (full_name, how) in [
            ("full_stack", "held, as the client calls it"),
            ("full_stack_cloned", "a clone per call"),
        ] {
            if let (Some(bare), Some(full)) = (
                ns(&format!("bare_service/{threads}_threads")),
                ns(&format!("{full_name}/{threads}_threads")),
            ) {
                println!(
                    "stack_cpu on {threads} thread(s), {how}: bare {bare:.0} ns, full stack \
                     {full:.0} ns per call: the layers cost {:.2} µs",
                    (full - bare) / 1e3
                );
            }
        }
    }
}

criterion_group!(benches, loopback, cpu);
criterion_main!(benches);
