//! `evolution bench`: load through the full client stack.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use evolution_client::{Error, EvolutionInference};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::time::Instant;

use crate::args::BenchArgs;
use crate::failure::Failure;
use crate::target::Target;

/// Calls made when neither `--requests` nor `--duration` is given.
const DEFAULT_REQUESTS: u64 = 1000;

/// The report; `--json` prints it as one object on the last line.
#[derive(Debug, Serialize)]
struct Report {
    requests: u64,
    ok: u64,
    errors: u64,
    errors_by_kind: BTreeMap<String, u64>,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    token_refreshes: u64,
    retries: u64,
    fallback_switches: u64,
    /// With a pool: each deployment's answered calls and state, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    deployments: Vec<evolution_client::metrics::DeploymentStats>,
}

enum Limit {
    Requests(u64),
    Until(Instant),
}

pub(crate) async fn run(args: BenchArgs) -> Result<(), Failure> {
    if args.concurrency == 0 {
        return Err(Failure::Config("--concurrency must be at least 1".into()));
    }
    let limit = match (args.requests, args.duration) {
        (Some(0), _) => return Err(Failure::Config("--requests must be at least 1".into())),
        (Some(n), _) => Limit::Requests(n),
        (None, Some(secs)) if secs.is_finite() && secs > 0.0 => {
            Limit::Until(Instant::now() + Duration::from_secs_f64(secs.min(1e9)))
        }
        (None, Some(_)) => {
            return Err(Failure::Config(
                "--duration must be a positive number of seconds".into(),
            ));
        }
        (None, None) => Limit::Requests(DEFAULT_REQUESTS),
    };
    let target = Target::build(&args.target, |builder, _| builder).await?;
    let progress = progress_bar(&limit, args.json);

    let started = Instant::now();
    let limit = Arc::new(limit);
    let issued = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let client = target.client.clone();
            let prompt = args.prompt.clone();
            let (limit, issued, progress) = (limit.clone(), issued.clone(), progress.clone());
            tokio::spawn(async move { worker(client, prompt, &limit, &issued, &progress).await })
        })
        .collect();
    let mut ok = 0;
    let mut errors_by_kind = BTreeMap::new();
    for worker in workers {
        let (worker_ok, worker_errors) = worker
            .await
            .map_err(|error| Failure::Other(format!("a bench worker failed: {error}")))?;
        ok += worker_ok;
        for (kind, count) in worker_errors {
            *errors_by_kind.entry(kind).or_insert(0) += count;
        }
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();

    let stats = target.client.stats();
    let errors: u64 = errors_by_kind.values().sum();
    let requests = ok + errors;
    let report = Report {
        requests,
        ok,
        errors,
        errors_by_kind,
        rps: requests as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_ms: stats.p50_response_time.as_secs_f64() * 1e3,
        p99_ms: stats.p99_response_time.as_secs_f64() * 1e3,
        token_refreshes: stats.successful_refreshes,
        retries: stats.retries,
        fallback_switches: stats.fallback_switches,
        deployments: stats.deployments,
    };
    if args.json {
        let line = serde_json::to_string(&report)
            .map_err(|error| Failure::Other(format!("cannot encode the report: {error}")))?;
        println!("{line}");
    } else {
        print_table(&report, elapsed, args.concurrency);
    }
    Ok(())
}

async fn worker(
    client: EvolutionInference,
    prompt: String,
    limit: &Limit,
    issued: &AtomicU64,
    progress: &ProgressBar,
) -> (u64, BTreeMap<String, u64>) {
    let mut ok = 0;
    let mut errors = BTreeMap::new();
    loop {
        let go = match limit {
            Limit::Requests(n) => issued.fetch_add(1, Ordering::Relaxed) < *n,
            Limit::Until(deadline) => Instant::now() < *deadline,
        };
        if !go {
            break;
        }
        match client.invoke(prompt.as_str()).await {
            Ok(_) => ok += 1,
            Err(error) => *errors.entry(kind(&error)).or_insert(0) += 1,
        }
        progress.inc(1);
    }
    (ok, errors)
}

/// A short, stable name for an error, for `errors_by_kind`.
fn kind(error: &Error) -> String {
    match error {
        Error::Config { .. } => "config".into(),
        Error::Auth(token) => format!("auth_{}", token.kind().as_str()),
        Error::KeysRejected(_) => "keys_rejected".into(),
        Error::Unavailable(_) => "pool_unavailable".into(),
        Error::Api { status, .. } => format!("api_{}", status.as_u16()),
        Error::QuotaExhausted { .. } => "quota_exhausted".into(),
        Error::RetryAfterTooLong { status, .. } => format!("retry_after_{}", status.as_u16()),
        Error::Transport(_) => "transport".into(),
        Error::Timeout(_) => "timeout".into(),
        Error::Decode(_) => "decode".into(),
        _ => "other".into(),
    }
}

fn progress_bar(limit: &Limit, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match limit {
        Limit::Requests(n) => ProgressBar::new(*n),
        Limit::Until(_) => ProgressBar::new_spinner(),
    };
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {pos}/{len} calls  {per_sec}  {elapsed_precise}")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn print_table(report: &Report, elapsed: Duration, concurrency: usize) {
    println!("requests          {}", report.requests);
    println!("ok                {}", report.ok);
    println!("errors            {}", report.errors);
    for (kind, count) in &report.errors_by_kind {
        println!("  {kind:<16}{count}");
    }
    println!(
        "elapsed           {:.2} s at concurrency {concurrency}",
        elapsed.as_secs_f64()
    );
    println!("throughput        {:.0} req/s", report.rps);
    println!("latency p50       {:.2} ms", report.p50_ms);
    println!("latency p99       {:.2} ms", report.p99_ms);
    println!("token refreshes   {}", report.token_refreshes);
    println!("retries           {}", report.retries);
    println!("fallback switches {}", report.fallback_switches);
    if !report.deployments.is_empty() {
        println!("deployments");
    }
    for deployment in &report.deployments {
        let why = deployment
            .reason
            .map(|reason| format!(" ({reason})"))
            .unwrap_or_default();
        println!(
            "  {:<16}{} served, {}{why}",
            deployment.name, deployment.served, deployment.state
        );
    }
}
