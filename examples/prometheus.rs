//! Exporting the client's metrics to Prometheus. The client records through the `metrics`
//! facade, so installing `metrics-exporter-prometheus` is all it takes: every client in the
//! process then shows up at `/metrics` (told apart by their constant labels). The names and
//! what they mean: `evolution_metrics::names`; a Grafana dashboard for them:
//! `dashboards/evolution.json`.
//!
//! The example serves `/metrics` on a free loopback port, makes a few seconds of calls — on
//! the embedded emulator with 4-second tokens, so refreshes show, and one transient 503, so
//! a retry shows — then scrapes itself once and prints the `evolution_*` series.
//!
//! `cargo run --example prometheus`

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use evolution_client::{Metrics, RetryConfig};
use evolution_emulator::{Fault, Route};
use evolution_examples::Target;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};
use tokio::time::Instant;

/// How long the example makes calls.
const TRAFFIC: Duration = Duration::from_secs(5);
/// The pause between two calls.
const PACE: Duration = Duration::from_millis(100);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = Target::pick().await;
    let addr = install_exporter()?;
    println!("Prometheus metrics at http://{addr}/metrics (while the example runs)");

    // Build the handle after installing the recorder, so the descriptions (# HELP) go to it.
    let metrics = Metrics::builder()
        .label("client", "prometheus-example")
        .build()?;
    let mut builder = target.builder().metrics(metrics);
    if let Some(emulator) = target.emulator() {
        // Tokens live 4 s: refreshed in the background from 2 s before expiry, never handed
        // out in the last second.
        emulator.set_ttl(Duration::from_secs(4));
        builder = builder
            .refresh_buffer(Duration::from_secs(1))
            .refresh_ahead(Duration::from_secs(2))
            .retry(
                RetryConfig::builder()
                    .base_delay(Duration::from_millis(100))
                    .build()?,
            );
        emulator.push_fault(Route::Chat, Fault::status(503));
        // A backup key, so the fallback series exist (`evolution_fallback_active` 0).
        emulator.add_key("backup-key-id", "backup-secret");
        builder = builder.backup_credentials("backup-key-id", "backup-secret");
    }
    let llm = builder.build()?;

    println!("Making calls for {} s...", TRAFFIC.as_secs());
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < TRAFFIC {
        llm.invoke(format!("Вопрос {calls}")).await?;
        calls += 1;
        tokio::time::sleep(PACE).await;
    }
    let stats = llm.stats();
    println!(
        "{calls} calls, {} retries, {} token refreshes\n",
        stats.retries, stats.successful_refreshes
    );

    // What Prometheus would see: one scrape over HTTP.
    let scrape = reqwest::get(format!("http://{addr}/metrics"))
        .await?
        .error_for_status()?
        .text()
        .await?;
    let mut buckets = 0;
    for line in scrape.lines().filter(|line| is_evolution(line)) {
        // Histogram buckets are many lines each; Grafana reads them, people rarely do.
        if line.contains("_bucket{") {
            buckets += 1;
        } else {
            println!("{line}");
        }
    }
    println!("({buckets} histogram bucket lines not shown)");
    Ok(())
}

/// Installs the Prometheus recorder with its HTTP listener on a free loopback port, with
/// buckets for the client's histograms (without them they would be summaries).
fn install_exporter() -> Result<SocketAddr, BuildError> {
    let mut attempts = 0;
    loop {
        let mut builder = PrometheusBuilder::new();
        for (name, buckets) in evolution_client::metrics::names::histogram_buckets() {
            builder = builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)?;
        }
        let addr = free_port();
        match builder.with_http_listener(addr).install() {
            // Another process may take the port between our check and the bind: try another.
            Err(BuildError::FailedToCreateHTTPListener(_)) if attempts < 5 => attempts += 1,
            result => return result.map(|()| addr),
        }
    }
}

/// A loopback address no one listens on right now.
fn free_port() -> SocketAddr {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .unwrap_or_else(|_| SocketAddr::from((Ipv4Addr::LOCALHOST, 9000)))
}

/// A line about an `evolution_*` series: its `# HELP`, `# TYPE` or a sample.
fn is_evolution(line: &str) -> bool {
    let name = line
        .strip_prefix("# HELP ")
        .or_else(|| line.strip_prefix("# TYPE "))
        .unwrap_or(line);
    name.starts_with("evolution_")
}
