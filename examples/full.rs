//! The reference's complete example ("Полный пример", `AdvancedTokenManager`): three
//! questions through a client with automatic tokens, retries and a backup key, and a stats
//! table at the end.
//!
//! The reference builds all of that by hand around two clients; here it is configuration
//! of one `EvolutionInference`, and `llm.stats()` is its `get_stats()`.
//!
//! On the embedded emulator (no `EVOLUTION_BASE_URL`) the run makes happen what the example
//! is about, and says afterwards what it saw:
//!
//! - tokens live 3 seconds, so the token is refreshed during the run, in the background,
//!   before it expires;
//! - the API answers one transient 503 (question 2), which is retried;
//! - the primary key is disabled at IAM and its tokens revoked before question 3, so the
//!   backup key takes over.
//!
//! Against Cloud.ru (`EVOLUTION_*` set, and optionally `EVOLUTION_BACKUP_KEY_ID` and
//! `EVOLUTION_BACKUP_SECRET`) nothing is staged: you see what really happens.
//!
//! `cargo run --release --example full` (`RUST_LOG=debug` shows every token exchange)

use std::io::IsTerminal;
use std::time::Duration;

use evolution_client::{EvolutionInference, Failback, Metrics, RetryConfig, Stats};
use evolution_emulator::{Emulator, Fault, Route};
use evolution_examples::{StatsTable, Target, millis};
use tokio::time::Instant;
use tracing_subscriber::EnvFilter;

const QUESTIONS: [&str; 3] = [
    "Что такое Python?",
    "Объясни машинное обучение",
    "Что такое нейронные сети?",
];

/// The backup key the emulator accepts.
const BACKUP_KEY_ID: &str = "backup-key-id";
const BACKUP_SECRET: &str = "backup-secret";

/// On the emulator: how long tokens live, and the client's two windows before expiry.
const EMULATOR_TTL: Duration = Duration::from_secs(3);
const EMULATOR_REFRESH_AHEAD: Duration = Duration::from_secs(2);
const EMULATOR_REFRESH_BUFFER: Duration = Duration::from_secs(1);

/// The first retry waits up to this long (full jitter), the next twice that.
const RETRY_BASE_DELAY: Duration = Duration::from_millis(250);
const RETRY_ATTEMPTS: u32 = 3;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The reference logs at INFO; here the library's warnings (a rejected key, a switch to
    // the backup) and retries show on stderr. RUST_LOG overrides.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("warn,evolution_retry=info")),
        )
        .with_target(false)
        .without_time()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();

    let target = Target::pick().await;
    let emulator = target.emulator();

    let (refresh_ahead, refresh_buffer) = match emulator {
        Some(_) => (EMULATOR_REFRESH_AHEAD, EMULATOR_REFRESH_BUFFER),
        None => (
            evolution_token::DEFAULT_REFRESH_AHEAD,
            evolution_token::DEFAULT_REFRESH_BUFFER,
        ),
    };
    let mut builder = target
        .builder()
        .retry(
            RetryConfig::builder()
                .max_attempts(RETRY_ATTEMPTS)
                .base_delay(RETRY_BASE_DELAY)
                .build()?,
        )
        // Stay on the backup key once switched, as the reference does.
        .failback(Failback::Never)
        .refresh_ahead(refresh_ahead)
        .refresh_buffer(refresh_buffer)
        .metrics(Metrics::builder().label("client", "full-example").build()?);
    if let Some(emulator) = emulator {
        emulator.add_key(BACKUP_KEY_ID, BACKUP_SECRET);
        emulator.set_ttl(EMULATOR_TTL);
        builder = builder.backup_credentials(BACKUP_KEY_ID, BACKUP_SECRET);
        println!(
            "On the emulator this run stages what the example is about:\n  \
             · tokens live {} s, so the token is refreshed during the run;\n  \
             · the API answers question 2 with a transient 503 once;\n  \
             · the primary key is disabled at IAM before question 3.",
            EMULATOR_TTL.as_secs()
        );
    }
    let llm = builder.build()?;
    let primary = llm.token_manager().key_id();
    let backup = llm.backup_token_manager().map(|tokens| tokens.key_id());

    println!("\n🚀 Evolution inference — token management, the complete example");
    println!("{}", "=".repeat(64));
    println!("✅ Client ready");
    println!("   model          {}", llm.model());
    println!("   primary key    {primary}");
    match &backup {
        Some(backup) => println!("   backup key     {backup}"),
        None => println!(
            "   backup key     none (set EVOLUTION_BACKUP_KEY_ID and EVOLUTION_BACKUP_SECRET)"
        ),
    }
    println!(
        "   retries        up to {RETRY_ATTEMPTS} attempts, {} ms × 2ⁿ with jitter",
        RETRY_BASE_DELAY.as_millis()
    );
    println!(
        "   token refresh  in the background from {} s before expiry; never used in its last {} s",
        refresh_ahead.as_secs(),
        refresh_buffer.as_secs()
    );

    let mut before_key_loss = None;
    for (index, question) in QUESTIONS.iter().enumerate() {
        let number = index + 1;
        if let Some(emulator) = emulator {
            match number {
                2 => near_expiry_then_503(&llm, emulator).await,
                3 => {
                    before_key_loss = Some(llm.stats());
                    emulator.disable_key(&primary);
                    emulator.revoke_key(&primary);
                    println!("\n   (the primary key is now disabled at IAM, its tokens revoked)");
                }
                _ => {}
            }
        }
        println!("\nQuestion {number}: {question}");
        ask(&llm, question).await;
    }

    let stats = llm.stats();
    println!("\n📊 Statistics (llm.stats())");
    print!("{}", StatsTable(&stats));

    match emulator {
        Some(emulator) => staged_report(&stats, before_key_loss.as_ref(), emulator, &llm),
        None => println!(
            "\nWhat happened: {} token(s) obtained from IAM, {} retry(ies), {} key switch(es); \
             serving key: {}.",
            stats.successful_refreshes,
            stats.retries,
            stats.fallback_switches,
            if stats.using_primary {
                "primary"
            } else {
                "backup"
            }
        ),
    }
    Ok(())
}

/// Waits until the token is inside its refresh-ahead window (but still usable), then queues
/// one 503 for the next chat request.
async fn near_expiry_then_503(llm: &EvolutionInference, emulator: &Emulator) {
    // The background refresh starts between 1.5 s and 2 s before expiry (jittered); the
    // token is not handed out in its last second. Ask with 1.3 s left.
    let left = llm.token_manager().info().expires_in.unwrap_or_default();
    let wait = left.saturating_sub(Duration::from_millis(1300));
    println!(
        "\n   (waiting {:.1} s: the token has {:.1} s left, so the next call finds it near expiry)",
        wait.as_secs_f64(),
        left.as_secs_f64()
    );
    tokio::time::sleep(wait).await;
    emulator.push_fault(Route::Chat, Fault::status(503));
}

/// Asks one question and says what it took, from the difference in `llm.stats()`.
async fn ask(llm: &EvolutionInference, question: &str) {
    let before = llm.stats();
    let started = Instant::now();
    let result = llm.invoke(question).await;
    let took = started.elapsed();
    // A refresh started by this call runs in the background: let it land before reading
    // the counters, so it is told with this question rather than the next.
    let settle = Instant::now();
    while llm.token_manager().info().refresh_in_flight && settle.elapsed() < Duration::from_secs(2)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let after = llm.stats();

    match result {
        Ok(answer) => println!("   Answer: {}", shorten(&answer, 100)),
        Err(error) => println!("   ❌ Error: {error}"),
    }
    let key = match (after.using_primary, llm.backup_token_manager()) {
        (false, Some(backup)) => format!("backup key {}", backup.key_id()),
        _ => format!("primary key {}", llm.token_manager().key_id()),
    };
    let mut notes = vec![millis(took), key];
    let delta = |f: fn(&Stats) -> u64| f(&after) - f(&before);
    let (obtained, refused) = (
        delta(|s| s.successful_refreshes),
        delta(|s| s.failed_refreshes),
    );
    if delta(|s| s.fallback_switches) > 0 {
        // The new token, if any, is the backup key's first.
        notes.push(match refused {
            0 => "switched to the backup key".to_owned(),
            _ => "IAM refused the primary key → switched to the backup key".to_owned(),
        });
    } else {
        if obtained > 0 {
            notes.push(match before.successful_refreshes {
                0 => "token obtained".to_owned(),
                _ => plural(obtained, "token refresh", "token refreshes"),
            });
        }
        if refused > 0 {
            notes.push(plural(
                refused,
                "failed token refresh",
                "failed token refreshes",
            ));
        }
    }
    if let n @ 1.. = delta(|s| s.retries) {
        notes.push(plural(n, "retry", "retries"));
    }
    println!("   {}", notes.join(" · "));
}

/// On the emulator: did what was staged happen? Read from the client's stats and the
/// emulator's own counters, not assumed.
fn staged_report(
    stats: &Stats,
    before_key_loss: Option<&Stats>,
    emulator: &Emulator,
    llm: &EvolutionInference,
) {
    let seen = emulator.stats();
    let primary = llm.token_manager().key_id();
    let mark = |ok: bool| if ok { "✓" } else { "✗" };
    println!("\nWhat happened (llm.stats() and the emulator's counters)");

    // Before the key was disabled only the primary key had asked IAM for tokens.
    let primary_tokens = before_key_loss.map_or(0, |s| s.successful_refreshes);
    println!(
        "  {} token refreshed during the run: {primary} got {primary_tokens} token(s) from IAM, \
         the first and {} refresh(es)",
        mark(primary_tokens >= 2),
        primary_tokens.saturating_sub(1)
    );

    let answered_503 = seen.chat_status(503);
    println!(
        "  {} transient 503 retried: the API answered 503 {answered_503}×, the client retried {}×",
        mark(answered_503 >= 1 && stats.retries >= answered_503),
        stats.retries
    );

    let refused = seen.iam_status(401);
    let backup_calls = seen.chat_requests_for(BACKUP_KEY_ID);
    println!(
        "  {} primary key rejected, backup key used: IAM refused {primary} {refused}×, \
         {} switch(es), {BACKUP_KEY_ID} served {backup_calls} call(s)",
        mark(refused >= 1 && stats.fallback_switches >= 1 && backup_calls >= 1),
        stats.fallback_switches
    );
    println!(
        "  {} every question answered: {} of {} calls succeeded",
        mark(stats.successes == QUESTIONS.len() as u64),
        stats.successes,
        stats.total_requests
    );
}

/// The first `max` characters of `text`, with "…" if it was longer (the reference prints
/// `response[:100]`).
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}
