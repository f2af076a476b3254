//! The refresh stall: steady traffic through `EvolutionInference::invoke` across token
//! expiries, with IAM answering in 500 ms, for two clients measured one after the other in
//! the same run:
//!
//! - **background** refresh (the default design: `refresh_ahead` > `refresh_buffer`), and
//! - **inline** refresh (`refresh_ahead == refresh_buffer`: nothing happens until the token
//!   enters the buffer, then callers wait for IAM — the reference SDK's behaviour).
//!
//! Time is compressed so that a run takes seconds: tokens live 4 s, the buffer is 1 s, the
//! ahead window 3 s (an hour-long token with a 30 s buffer behaves the same, once an hour).
//! Traffic is open-loop — a call is started every millisecond whatever the previous ones
//! are doing — and each call's latency counts from its scheduled start, so calls that queue
//! behind a stall are counted in full (no coordinated omission).
//!
//! Not a criterion benchmark: the figure is a latency distribution over one scenario
//! (p50/p99/p99.9/max and how many calls waited), not a mean of repeated iterations.
//!
//! ```text
//! cargo bench -p evolution-benches --bench refresh_stall
//! ```

use std::time::Duration;

use evolution_benches::{bench_mode, machine, runtime};
use evolution_client::EvolutionInference;
use evolution_emulator::{DEMO_KEY_ID, DEMO_MODEL, DEMO_SECRET, Emulator, Route};
use tokio::time::{Instant, MissedTickBehavior};

const TTL: Duration = Duration::from_secs(4);
const BUFFER: Duration = Duration::from_secs(1);
const AHEAD: Duration = Duration::from_secs(3);
const IAM_LATENCY: Duration = Duration::from_millis(500);
const RUN: Duration = Duration::from_secs(8);
const INTERVAL: Duration = Duration::from_millis(1);
/// A call slower than this waited on IAM (loopback calls take about a millisecond).
const STALLED: Duration = Duration::from_millis(100);

struct Report {
    name: &'static str,
    latencies: Vec<Duration>,
    errors: usize,
    iam_requests: u64,
}

impl Report {
    fn quantile(&self, q: f64) -> Duration {
        let index = ((self.latencies.len() as f64 * q).ceil() as usize).saturating_sub(1);
        self.latencies[index.min(self.latencies.len() - 1)]
    }

    fn row(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let stalled = self.latencies.iter().filter(|l| **l >= STALLED).count();
        format!(
            "| {:<10} | {:>6} | {:>6} | {:>8.2} | {:>8.2} | {:>8.2} | {:>8.2} | {:>7} | {:>3} |",
            self.name,
            self.latencies.len(),
            self.errors,
            ms(self.quantile(0.50)),
            ms(self.quantile(0.99)),
            ms(self.quantile(0.999)),
            ms(*self.latencies.last().expect("calls were made")),
            stalled,
            self.iam_requests,
        )
    }
}

fn main() {
    if !bench_mode() {
        println!("refresh_stall: skipped (a real-time scenario of ~20 s; run it with cargo bench)");
        return;
    }
    println!("{}", machine());
    // The server on its own runtime (its own threads), so a stalled client runtime and
    // the server never share workers.
    let server_runtime = runtime(1);
    let emulator = server_runtime
        .block_on(
            Emulator::builder()
                .ttl(TTL)
                .latency(Route::Iam, IAM_LATENCY)
                .start(),
        )
        .expect("the emulator starts");
    println!(
        "refresh_stall: tokens live {TTL:?}, buffer {BUFFER:?}, ahead {AHEAD:?}, IAM {IAM_LATENCY:?}; \
         one call every {INTERVAL:?} for {RUN:?} per client"
    );

    let client_runtime = runtime(2);
    let reports: Vec<Report> = [("background", AHEAD), ("inline", BUFFER)]
        .into_iter()
        .map(|(name, ahead)| client_runtime.block_on(scenario(&emulator, name, ahead)))
        .collect();

    println!();
    println!(
        "| refresh    |  calls | errors |  p50 ms  |  p99 ms  | p99.9 ms |  max ms  | ≥{}ms | IAM |",
        STALLED.as_millis()
    );
    println!(
        "|------------|-------:|-------:|---------:|---------:|---------:|---------:|--------:|----:|"
    );
    for report in &reports {
        println!("{}", report.row());
    }
    let (on, off) = (&reports[0], &reports[1]);
    println!(
        "\nrefresh_stall: p99 {:.2} ms with background refresh versus {:.2} ms inline",
        on.quantile(0.99).as_secs_f64() * 1e3,
        off.quantile(0.99).as_secs_f64() * 1e3,
    );
    drop(server_runtime);
}

async fn scenario(emulator: &Emulator, name: &'static str, ahead: Duration) -> Report {
    let client = EvolutionInference::builder()
        .model(DEMO_MODEL)
        .key_id(DEMO_KEY_ID)
        .secret(DEMO_SECRET)
        .base_url(emulator.base_url())
        .auth_url(emulator.auth_url())
        .refresh_buffer(BUFFER)
        .refresh_ahead(ahead)
        .build()
        .expect("a valid client");
    // The first token (500 ms) and the connection, outside the measurement.
    client
        .invoke("warm-up")
        .await
        .expect("the warm-up call succeeds");
    let iam_before = emulator.stats().iam_requests;

    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let end = Instant::now() + RUN;
    let mut calls = Vec::with_capacity((RUN.as_millis() / INTERVAL.as_millis()) as usize);
    loop {
        // The scheduled start, not when this loop got round to it.
        let scheduled = ticks.tick().await;
        if scheduled >= end {
            break;
        }
        let client = client.clone();
        calls.push(tokio::spawn(async move {
            let result = client.invoke("Привет!").await;
            (scheduled.elapsed(), result.is_ok())
        }));
    }
    let mut latencies = Vec::with_capacity(calls.len());
    let mut errors = 0;
    for call in calls {
        let (latency, ok) = call.await.expect("no call panics");
        latencies.push(latency);
        errors += usize::from(!ok);
    }
    latencies.sort_unstable();
    Report {
        name,
        latencies,
        errors,
        iam_requests: emulator.stats().iam_requests - iam_before,
    }
}
