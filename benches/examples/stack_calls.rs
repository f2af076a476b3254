//! Runs one loopback case of `benches/stack_overhead.rs` in a plain process, for profilers
//! that need one (perf, valgrind's callgrind and DHAT) rather than a criterion run:
//!
//! ```text
//! cargo build --release -p evolution-emulator -p evolution-benches --example stack_calls
//! valgrind --tool=callgrind target/release/examples/stack_calls full_stack 20000
//! ```
//!
//! Cases: `bare_reqwest`, `bare_reqwest_url`, `bare_reqwest_json`, `bare_reqwest_json_url`
//! (the `_url` ones post to a URL parsed once), `transport`, `full_stack`, `send` (the
//! same requests through `EvolutionInference::send`), `invoke`, and
//! `invoke_default` (a client with the builder's defaults: one key, no total timeout), and
//! `fused` (what `invoke_default` does, written as one function over reqwest: see
//! `evolution_benches::calls::fused_call`). It
//! prints the rate and the client's CPU time per call; under callgrind, compare the
//! instruction totals of two cases over the same number of calls. The client's runtime has
//! 2 worker threads, or as many as the `WORKERS` environment variable says.

// Benchmarks measure real elapsed time.
#![allow(clippy::disallowed_methods)]

use std::process::ExitCode;

use evolution_benches::calls::{
    Target, Warm, bare_call, bare_json_call, chat_body, default_client_builder, fused_call,
    in_flight, invoke_call, send_call, service_call,
};
use evolution_benches::{Server, process_cpu_time, runtime};
use evolution_client::{HttpTransport, Metrics};
use tower::util::BoxCloneSyncService;

const CASES: &str = "bare_reqwest, bare_reqwest_url, bare_reqwest_json, bare_reqwest_json_url, \
                     transport, full_stack, send, invoke, invoke_default, fused";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_else(|| "full_stack".to_owned());
    let calls = match args.next().map(|calls| calls.parse::<u64>()) {
        None => 100_000,
        Some(Ok(calls)) if calls > 0 => calls,
        Some(_) => {
            eprintln!("usage: stack_calls [CASE] [CALLS > 0]; cases: {CASES}");
            return ExitCode::from(2);
        }
    };

    let server = Server::start();
    let workers = std::env::var("WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    let runtime = runtime(workers);
    let Warm {
        client,
        bearer,
        uri,
    } = Warm::new(&server, &runtime);
    let http = reqwest::Client::new();
    let [text, parsed] = Target::both(&uri);

    let cpu = process_cpu_time();
    let elapsed = match case.as_str() {
        "bare_reqwest" => in_flight(&runtime, calls, bare_call(http, text, chat_body(), bearer)),
        "bare_reqwest_url" => in_flight(
            &runtime,
            calls,
            bare_call(http, parsed, chat_body(), bearer),
        ),
        "bare_reqwest_json" => in_flight(&runtime, calls, bare_json_call(http, text, bearer)),
        "bare_reqwest_json_url" => in_flight(&runtime, calls, bare_json_call(http, parsed, bearer)),
        "transport" => {
            let transport = BoxCloneSyncService::new(HttpTransport::new(http));
            in_flight(
                &runtime,
                calls,
                service_call(transport, uri, chat_body(), Some(bearer)),
            )
        }
        "full_stack" => in_flight(
            &runtime,
            calls,
            service_call(client.service(), uri, chat_body(), None),
        ),
        "send" => in_flight(&runtime, calls, send_call(client, uri, chat_body())),
        "invoke" => in_flight(&runtime, calls, invoke_call(client)),
        "fused" => {
            let client = default_client_builder(&server)
                .build()
                .expect("a valid client");
            let url = reqwest::Url::parse(&uri.to_string()).expect("a URL");
            let (tokens, metrics) = (client.token_manager().clone(), Metrics::new());
            in_flight(&runtime, calls, fused_call(http, url, tokens, metrics))
        }
        "invoke_default" => {
            let client = default_client_builder(&server)
                .build()
                .expect("a valid client");
            in_flight(&runtime, calls, invoke_call(client))
        }
        other => {
            eprintln!("unknown case `{other}`; cases: {CASES}");
            return ExitCode::from(2);
        }
    };
    let cpu = process_cpu_time() - cpu;
    println!(
        "{case}: {calls} calls, {:.0} calls/s, client CPU {:.1} µs per call",
        calls as f64 / elapsed.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / calls as f64
    );
    ExitCode::SUCCESS
}
