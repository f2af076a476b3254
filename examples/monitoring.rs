//! Metrics, as in the reference's "Метрики" section: its `TokenStats` and the
//! `MonitoredEvolutionInference` wrapper that times each call. Here that wrapper is a
//! layer already in the client's stack (evolution-metrics' `MetricsLayer`, outermost, one
//! observation per call, retries included), and the token manager reports every refresh to
//! the same handle. `llm.stats()` is the reference's `get_stats()`: a snapshot of cheap
//! atomic counters, no exporter needed. (To export the same numbers to Prometheus, see the
//! `prometheus` example.)
//!
//! `cargo run --example monitoring`

use evolution_client::Metrics;
use evolution_emulator::{Fault, Route};
use evolution_examples::{StatsTable, Target, millis};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = Target::pick().await;
    // Constant labels tell several clients apart in an exporter; `stats()` does not need them.
    let metrics = Metrics::builder().label("client", "monitoring").build()?;
    let llm = target.builder().metrics(metrics).build()?;

    for prompt in ["Привет!", "Что такое токен?", "Как его обновлять?"]
    {
        let answer = llm.invoke(prompt).await?;
        let stats = llm.stats();
        println!(
            "{prompt:<20} → {answer}\n{:<20}   calls: {}, average: {}",
            "",
            stats.total_requests,
            millis(stats.avg_response_time)
        );
    }

    // A refresh by hand (what a revoked token's 401 would cause): a second IAM exchange.
    llm.token_manager().invalidate();
    llm.invoke("После обновления токена").await?;

    // A failed call counts too: the success rate is honest.
    if let Some(emulator) = target.emulator() {
        emulator.push_fault(Route::Chat, Fault::status(400));
        if let Err(error) = llm.invoke("Этот запрос не пройдёт").await {
            println!("a failing call: {error}");
        }
    }

    let stats = llm.stats();
    println!("\nllm.stats():\n{}", StatsTable(&stats));
    // The snapshot serialises like the reference's dict (durations in seconds).
    println!("as JSON: {}", serde_json::to_string(&stats)?);
    Ok(())
}
