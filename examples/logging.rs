//! Logging of token acquisition and refresh, as in the reference's "Логирование"
//! section (`logging.basicConfig(level=logging.DEBUG)`): here a `tracing` subscriber.
//! Secrets and tokens never appear in the output.
//!
//! `RUST_LOG=evolution_token=debug cargo run --example logging`

use evolution_examples::Target;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), evolution_client::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("evolution_token=debug,evolution_client=debug")),
        )
        .init();
    let target = Target::pick().await;
    let llm = target.builder().build()?;
    // Shows "requesting IAM token", "token refreshed" (with the lifetime) and the
    // per-attempt HTTP span with status and latency.
    println!("answer: {}", llm.invoke("Привет!").await?);
    llm.token_manager().invalidate();
    println!("answer: {}", llm.invoke("Ещё раз").await?);
    Ok(())
}
