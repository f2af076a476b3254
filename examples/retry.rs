//! Retries, as in the reference's "Повторные попытки" section (`RetryableEvolutionInference`:
//! 3 attempts, 1 s × 2ⁿ). Here they are a layer of the client, configured by a
//! [`RetryConfig`]: *what* is retried is a classification (408, 429, 5xx, dropped
//! connections, timeouts — never a rejected key or a bad request), *when* is exponential
//! backoff with jitter, honouring the server's `Retry-After`, within a budget shared by
//! every clone of the client.
//!
//! On the embedded emulator each call meets a fault the emulator injects, so every branch
//! shows: a 503 that is retried, a 429 whose `Retry-After` is honoured, a 400 that is not
//! retried, and a revoked token (401), which is not a retry at all: the auth layer fetches
//! a new token and resends once.
//!
//! `cargo run --example retry`

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use evolution_client::retry::RetryEvent;
use evolution_client::{EvolutionInference, RetryConfig};
use evolution_emulator::{Emulator, Fault, Route};
use evolution_examples::{Target, millis};
use tokio::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = Target::pick().await;

    // Every retry goes to the observers before its wait starts; this one prints it and
    // counts it, so each call below can say how many attempts it took.
    let retries = Arc::new(AtomicU32::new(0));
    let counter = retries.clone();
    let config = RetryConfig::builder()
        .max_attempts(3)
        // The default is 1 s × 2ⁿ (as the reference); shorter here so the demo is quick.
        .base_delay(Duration::from_millis(200))
        .max_delay(Duration::from_secs(5))
        .observer(move |event: &RetryEvent| {
            counter.fetch_add(1, Ordering::Relaxed);
            println!(
                "    retrying: {} → attempt {} in {:.0} ms",
                event.reason,
                event.attempt,
                event.delay.as_secs_f64() * 1e3
            );
        })
        .build()?;
    let llm = target.builder().retry(config).build()?;
    let emulator = target.emulator();
    if emulator.is_none() {
        println!(
            "Against Cloud.ru nothing is injected: the calls below should succeed at once, \
             and any retry shown is a real one."
        );
    }

    println!("1. A transient 503 (the service is briefly unavailable): retried.");
    inject(emulator, Fault::status(503));
    ask(&llm, &retries, "Привет!").await;

    println!(
        "2. A 429 with `Retry-After: 1`: the retry waits at least as long as the server asks."
    );
    inject(emulator, Fault::status(429).with_header("retry-after", "1"));
    ask(&llm, &retries, "Как дела?").await;

    println!("3. A 400 (a bad request): not retried, the caller gets the error at once.");
    inject(
        emulator,
        Fault::status(400).with_message("this request is malformed"),
    );
    ask(&llm, &retries, "Что-то не так").await;

    println!(
        "4. A revoked token (401): not a retry; the token is refreshed and the call resent once."
    );
    if let Some(emulator) = emulator {
        emulator.revoke_key(&llm.token_manager().key_id());
    }
    ask(&llm, &retries, "Ещё раз").await;

    let stats = llm.stats();
    println!(
        "\nretries: {} · calls: {} · successful: {} · token refreshes: {}",
        stats.retries, stats.total_requests, stats.successes, stats.successful_refreshes
    );
    if let Some(emulator) = emulator {
        let seen = emulator.stats();
        println!(
            "the emulator answered: {:?} (status → count), IAM requests: {}",
            seen.chat_by_status, seen.iam_requests
        );
    }
    Ok(())
}

/// On the emulator, queue `fault` for the next chat request. Against Cloud.ru nothing is
/// injected: the calls simply succeed on their first attempt.
fn inject(emulator: Option<&Emulator>, fault: Fault) {
    if let Some(emulator) = emulator {
        emulator.push_fault(Route::Chat, fault);
    }
}

/// One call: its answer or error, how many attempts it took and how long.
async fn ask(llm: &EvolutionInference, retries: &AtomicU32, prompt: &str) {
    let before = retries.load(Ordering::Relaxed);
    let started = Instant::now();
    let result = llm.invoke(prompt).await;
    let attempts = 1 + retries.load(Ordering::Relaxed) - before;
    let took = millis(started.elapsed());
    match result {
        Ok(answer) => println!("    answer after {attempts} attempt(s), {took}: {answer}"),
        Err(error) => println!(
            "    error after {attempts} attempt(s), {took} (retryable: {}): {error}",
            error.is_retryable()
        ),
    }
}
