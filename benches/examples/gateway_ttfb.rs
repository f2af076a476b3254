//! Time to first chunk of a streamed chat call, direct to an upstream and through the
//! gateway, for the gateway bench (`benches/gateway/run.sh`). A load generator like oha
//! cannot measure it: it sees the answer's head, not its first chunk.
//!
//! ```text
//! cargo build --release -p evolution-benches --example gateway_ttfb
//! gateway_ttfb DIRECT_URL DIRECT_BEARER GATEWAY_URL N
//! ```
//!
//! URLs are the full chat completions URL (`http://127.0.0.1:PORT/v1/chat/completions`);
//! `-` as DIRECT_BEARER sends no Authorization header; the gateway gets none (run it
//! without gateway keys). The model is `demo-model`, or `MODEL` from the environment.
//!
//! N sequential streams go to each target, alternating, after 20 unrecorded calls to
//! each. Each is timed from just before it is sent to the arrival of its first body chunk,
//! and one JSON line is printed:
//! `{"direct": {"p50_us", "p99_us", "max_us"}, "gateway": {...}, "added": {...}, "n": N}`.
//! The runtime is single-threaded: the machine it was written for has 2 cores, shared
//! with the gateway and the upstream.

// Benchmarks measure real elapsed time.
#![allow(clippy::disallowed_methods)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: gateway_ttfb DIRECT_URL DIRECT_BEARER GATEWAY_URL N";

/// Calls to each target before timing starts: connections made, caches warm.
const WARM_UP: usize = 20;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gateway_ttfb: no runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [direct, bearer, gateway, n] => match n.parse() {
            Ok(n) if n > 0 => runtime.block_on(ttfb(direct, bearer, gateway, n)),
            _ => Err(USAGE.to_owned()),
        },
        _ => Err(USAGE.to_owned()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("gateway_ttfb: {message}");
            ExitCode::FAILURE
        }
    }
}

fn stream_body() -> String {
    let model = std::env::var("MODEL").unwrap_or_else(|_| "demo-model".to_owned());
    serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "Привет!"}],
        "stream": true,
    })
    .to_string()
}

fn request(
    client: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    body: &str,
) -> reqwest::RequestBuilder {
    let request = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned());
    match bearer {
        Some(bearer) => request.bearer_auth(bearer),
        None => request,
    }
}

/// One stream: the time to its first body chunk; the rest is read and dropped.
async fn first_chunk(request: reqwest::RequestBuilder) -> Result<Duration, String> {
    let started = Instant::now();
    let mut response = request.send().await.map_err(|e| format!("send: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let first = response.chunk().await.map_err(|e| format!("body: {e}"))?;
    let took = started.elapsed();
    if first.is_none() {
        return Err("empty stream".to_owned());
    }
    while response
        .chunk()
        .await
        .map_err(|e| format!("body: {e}"))?
        .is_some()
    {}
    Ok(took)
}

fn percentiles(mut micros: Vec<u64>) -> serde_json::Value {
    micros.sort_unstable();
    let at = |q: f64| {
        let rank = ((micros.len() as f64 * q).ceil() as usize).clamp(1, micros.len());
        micros[rank - 1]
    };
    serde_json::json!({
        "p50_us": at(0.50),
        "p99_us": at(0.99),
        "max_us": micros.last().copied().unwrap_or(0),
    })
}

async fn ttfb(direct: &str, bearer: &str, gateway: &str, n: usize) -> Result<(), String> {
    let bearer = (bearer != "-").then_some(bearer);
    let body = stream_body();
    // One client per target, so that each keeps its own warm connection.
    let direct_client = reqwest::Client::new();
    let gateway_client = reqwest::Client::new();
    let (mut direct_us, mut gateway_us) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..WARM_UP + n {
        // Alternate which target goes first, so that neither always follows the other.
        let order = if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_direct in order {
            let took = if is_direct {
                first_chunk(request(&direct_client, direct, bearer, &body)).await
            } else {
                first_chunk(request(&gateway_client, gateway, None, &body)).await
            }
            .map_err(|e| format!("{}: {e}", if is_direct { direct } else { gateway }))?;
            if i >= WARM_UP {
                let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                if is_direct {
                    direct_us.push(micros);
                } else {
                    gateway_us.push(micros);
                }
            }
        }
    }
    let (direct, gateway) = (percentiles(direct_us), percentiles(gateway_us));
    let added = |field: &str| {
        let a = gateway[field].as_i64().unwrap_or(0);
        let b = direct[field].as_i64().unwrap_or(0);
        a - b
    };
    let added = serde_json::json!({
        "p50_us": added("p50_us"),
        "p99_us": added("p99_us"),
        "max_us": added("max_us"),
    });
    println!(
        "{}",
        serde_json::json!({"direct": direct, "gateway": gateway, "added": added, "n": n})
    );
    Ok(())
}
