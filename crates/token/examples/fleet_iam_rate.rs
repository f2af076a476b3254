//! IAM requests per hour for a fleet of 16 replicas, with and without the shared cache.
//!
//! Simulated on tokio's paused clock against the in-process emulator (tokens live
//! 3600 s; default refresh buffer and refresh-ahead window): each replica calls
//! `get_token` every second for `HOURS` simulated hours (24 by default), and the emulator
//! counts the IAM requests. A count, not a timing: it runs in a few seconds.
//!
//! ```text
//! cargo run -p evolution-token --example fleet_iam_rate -- [HOURS]
//! ```

use std::time::Duration;

#[path = "../tests/scenarios/shared_cache.rs"]
mod scenarios;

const REPLICAS: usize = 16;

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let hours: u32 = std::env::args()
        .nth(1)
        .map(|arg| arg.parse().expect("HOURS is a whole number"))
        .unwrap_or(24)
        .max(2);
    let every = Duration::from_secs(1);
    println!(
        "{REPLICAS} replicas, 3600 s tokens, one call per replica per second, {hours} simulated hours"
    );
    println!(
        "{:<22} {:>12} {:>20} {:>10}",
        "", "first hour", "steady (per hour)", "total"
    );
    for (name, shared) in [("without shared cache", false), ("with shared cache", true)] {
        let per_hour = scenarios::fleet_iam_requests_per_hour(REPLICAS, hours, every, shared).await;
        let total: u64 = per_hour.iter().sum();
        let steady = per_hour[1..].iter().sum::<u64>() as f64 / f64::from(hours - 1);
        println!("{name:<22} {:>12} {steady:>20.2} {total:>10}", per_hour[0]);
    }
}
