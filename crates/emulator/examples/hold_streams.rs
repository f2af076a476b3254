//! Hold many streamed chat completions open at once, and report what it took.
//!
//! For memory benches: start an emulator with slow streams, then hold N of them open through
//! whatever sits in between (or straight at the emulator), optionally sampling the RSS of a
//! process (the one under test) while they are open.
//!
//! ```text
//! evolution-emulator --http2 --stream-interval-ms 1000 --stream-chunks 30 --port 8090 &
//! cargo run -p evolution-emulator --example hold_streams -- \
//!     --root http://127.0.0.1:8090 --streams 10000 --http2 --watch-pid <PID>
//! ```
//!
//! Without `--bearer`, a token is fetched from the emulator's IAM at `--root` with the demo
//! key. Against a gateway, pass `--root` the gateway's and `--bearer` a gateway key.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::time::Instant;

#[derive(Debug, Parser)]
struct Args {
    /// Origin to call, e.g. http://127.0.0.1:8090.
    #[arg(long)]
    root: String,
    /// Path of the chat route.
    #[arg(long, default_value = "/v1/chat/completions")]
    path: String,
    /// Bearer token to send; without it, one from the emulator's IAM (demo key).
    #[arg(long)]
    bearer: Option<String>,
    /// Streams to hold open at once.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// Model to ask for.
    #[arg(long, default_value = evolution_emulator::DEMO_MODEL)]
    model: String,
    /// Speak HTTP/2 with prior knowledge (h2c): every stream on one connection.
    #[arg(long)]
    http2: bool,
    /// Most streams being opened at once (requests sent, head not yet received).
    #[arg(long, default_value_t = 256)]
    opening: usize,
    /// A process whose RSS to sample every 200 ms: before, at the peak, and after.
    #[arg(long)]
    watch_pid: Option<u32>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut http = reqwest::Client::builder().no_proxy();
    if args.http2 {
        http = http.http2_prior_knowledge();
    }
    let http = http.build()?;
    let bearer = match &args.bearer {
        Some(bearer) => bearer.clone(),
        None => demo_token(&http, &args.root).await?,
    };
    let baseline = args.watch_pid.and_then(rss_kib);
    let peak_rss = Arc::new(AtomicU64::new(baseline.unwrap_or(0)));
    let sampler = args.watch_pid.map(|pid| {
        let peak = peak_rss.clone();
        tokio::spawn(async move {
            loop {
                if let Some(rss) = rss_kib(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    });

    let url = format!("{}{}", args.root, args.path);
    let body = json!({
        "model": args.model,
        "messages": [{ "role": "user", "content": "hold this stream open" }],
        "stream": true,
    });
    let opening = Arc::new(Semaphore::new(args.opening));
    let open = Arc::new(AtomicU64::new(0));
    let open_max = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.streams)
        .map(|_| {
            let (http, url, body, bearer) =
                (http.clone(), url.clone(), body.clone(), bearer.clone());
            let (opening, open, open_max) = (opening.clone(), open.clone(), open_max.clone());
            tokio::spawn(async move {
                let permit = opening.acquire_owned().await.expect("never closed");
                let sent = Instant::now();
                let response = http
                    .post(&url)
                    .bearer_auth(&bearer)
                    .json(&body)
                    .send()
                    .await;
                drop(permit);
                let response = response.map_err(|error| error.to_string())?;
                if !response.status().is_success() {
                    return Err(format!("status {}", response.status()));
                }
                let now = open.fetch_add(1, Ordering::Relaxed) + 1;
                open_max.fetch_max(now, Ordering::Relaxed);
                let mut chunks = response.bytes_stream();
                let mut first = None;
                let mut done = false;
                while let Some(chunk) = chunks.next().await {
                    let chunk = chunk.map_err(|error| error.to_string());
                    let chunk = match chunk {
                        Ok(chunk) => chunk,
                        Err(error) => {
                            open.fetch_sub(1, Ordering::Relaxed);
                            return Err(error);
                        }
                    };
                    first.get_or_insert_with(|| sent.elapsed());
                    done |= chunk.ends_with(b"data: [DONE]\n\n");
                }
                open.fetch_sub(1, Ordering::Relaxed);
                if !done {
                    return Err("the stream ended before [DONE]".to_owned());
                }
                Ok(first.unwrap_or_default())
            })
        })
        .collect();

    let mut first_chunk = Vec::new();
    let mut errors = std::collections::BTreeMap::<String, usize>::new();
    for task in tasks {
        match task.await? {
            Ok(first) => first_chunk.push(first),
            Err(error) => *errors.entry(error).or_default() += 1,
        }
    }
    let elapsed = started.elapsed();
    if let Some(sampler) = sampler {
        sampler.abort();
    }
    first_chunk.sort();
    let at = |q: f64| {
        first_chunk
            .get(((first_chunk.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    println!(
        "streams={} ok={} failed={} open_max={} elapsed={:.1}s",
        args.streams,
        first_chunk.len(),
        args.streams - first_chunk.len(),
        open_max.load(Ordering::Relaxed),
        elapsed.as_secs_f64()
    );
    println!(
        "first_chunk p50={:?} p99={:?} max={:?}",
        at(0.5),
        at(0.99),
        first_chunk.last().copied().unwrap_or_default()
    );
    for (error, n) in &errors {
        println!("error x{n}: {error}");
    }
    if let (Some(pid), Some(baseline)) = (args.watch_pid, baseline) {
        let peak = peak_rss.load(Ordering::Relaxed);
        let per_stream = (peak.saturating_sub(baseline) * 1024) as f64 / args.streams as f64;
        println!(
            "rss pid={pid} baseline={baseline} KiB peak={peak} KiB per_stream={:.0} B",
            per_stream
        );
    }
    Ok(())
}

async fn demo_token(
    http: &reqwest::Client,
    root: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let answer: Value = http
        .post(format!("{root}/api/v1/auth/token"))
        .json(&json!({
            "keyId": evolution_emulator::DEMO_KEY_ID,
            "secret": evolution_emulator::DEMO_SECRET,
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(answer["access_token"]
        .as_str()
        .ok_or("no access_token in the IAM answer")?
        .to_owned())
}

/// The resident set size of `pid` in KiB, from `/proc` (Linux).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
