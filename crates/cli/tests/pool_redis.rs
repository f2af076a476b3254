//! Rate limits shared by two processes through a real redis-server (issue 19): two
//! `evolution bench` runs over one pool file, at once, with `EVOLUTION_REDIS_URL`. Together
//! they stay under the first deployment's limit; the rest goes to the second deployment.
//!
//! Runs only with `--features test-redis-server`. Uses the Redis at
//! `EVOLUTION_TEST_REDIS_URL` when set, else starts `redis-server` (from `PATH`) on a free
//! port.
#![cfg(feature = "test-redis-server")]

#[path = "support/pool.rs"]
mod support;

use std::time::Duration;

use evolution_emulator::Emulator;
use tokio::time::Instant;

use evolution_testkit::redis;

use self::support::{Scratch, command, report, run};

/// A name no other run shares: the limits live in Redis under the deployment's name.
fn unique(name: &str) -> String {
    use std::hash::BuildHasher;
    // Each `RandomState` is seeded afresh from the OS: a random suffix without a dependency.
    let random = std::collections::hash_map::RandomState::new().hash_one(name);
    format!("{name}-{random:016x}")
}

async fn two_keys() -> Emulator {
    Emulator::builder()
        .key("limited", "secret-1")
        .key("spare", "secret-2")
        .start()
        .await
        .unwrap()
}

/// Two benches of `requests` calls each at once, over `file`, sharing `redis`; the time
/// they took together.
async fn two_benches(
    emu: &Emulator,
    file: &std::path::Path,
    redis: &str,
    requests: &str,
) -> Duration {
    let secrets = [("LIMITED_SECRET", "secret-1"), ("SPARE_SECRET", "secret-2")];
    let started = Instant::now();
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let mut bench = command(
                emu,
                file,
                &secrets,
                &[
                    "bench",
                    "--json",
                    "--requests",
                    requests,
                    "--concurrency",
                    "4",
                ],
            );
            bench.env("EVOLUTION_REDIS_URL", redis);
            tokio::spawn(run(bench))
        })
        .collect();
    for run in runs {
        let output = run.await.unwrap();
        let report = report(&output);
        assert_eq!(report["errors"], 0, "{report}");
    }
    started.elapsed()
}

fn pool_file(limited: &str, spare: &str, limit: &str) -> String {
    format!(
        r#"
strategy = "ordered"

[[deployment]]
name = "{limited}"
key_id = "limited"
secret_env = "LIMITED_SECRET"
{limit}

[[deployment]]
name = "{spare}"
key_id = "spare"
secret_env = "SPARE_SECRET"
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn rpm_is_shared_by_two_processes() {
    let (_server, redis) = redis().await;
    let emu = two_keys().await;
    let scratch = Scratch::new();
    let file = scratch.file(
        "pool.toml",
        &pool_file(&unique("limited"), &unique("spare"), "rpm = 30"),
    );
    let took = two_benches(&emu, &file, &redis, "40").await;
    let stats = emu.stats();
    let limited = stats.chat_requests_for("limited");
    // A minute's burst (30), plus one every 2 s of the run: the two processes together.
    let refilled = (took.as_secs_f64() / 2.0).ceil() as u64;
    assert!(
        (30..=30 + refilled).contains(&limited),
        "{limited} calls reached the limited key in {took:?}"
    );
    assert_eq!(stats.chat_requests_for("spare"), 80 - limited);
}

#[tokio::test(flavor = "multi_thread")]
async fn tpm_is_shared_by_two_processes() {
    let (_server, redis) = redis().await;
    let emu = two_keys().await;
    let scratch = Scratch::new();
    // Each call asks for about 520 tokens (max_tokens 512 and the prompt) and uses 4
    // (the emulator's usage: "Привет!" in, "[limited] echo: Привет!" out).
    let file = scratch.file(
        "pool.toml",
        &pool_file(&unique("limited"), &unique("spare"), "tpm = 200"),
    );
    let took = two_benches(&emu, &file, &redis, "100").await;
    let stats = emu.stats();
    let limited = stats.chat_requests_for("limited");
    assert!(limited >= 1, "the limited key served nothing");
    // What it used stays within the minute's 200 tokens, plus what the run's time refilled
    // and one call's estimate per process (charged before its usage corrects it).
    let refilled = took.as_secs_f64() * 200.0 / 60.0;
    let used = limited as f64 * 4.0;
    assert!(
        used <= 200.0 + refilled + 2.0 * 4.0,
        "{limited} calls ({used} tokens) reached the limited key in {took:?}"
    );
    assert_eq!(stats.chat_requests_for("spare"), 200 - limited);
}
