//! A rig agent on Evolution: rig's OpenAI-compatible provider, sending through
//! evolution-rs's stack (IAM token, retries, backup key, metrics).
//!
//! `cargo run -p evolution-examples --features rig --example rig_agent`

use std::io::Write;

use evolution_client::rig::Client;
use evolution_client::rig::rig_agent::agent::MultiTurnStreamItem;
use evolution_client::rig::rig_core::streaming::{Item, StreamEvent};
use evolution_examples::Target;
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = Target::pick().await;
    let client = match target.emulator() {
        // Cloud.ru: the EVOLUTION_* variables (and a backup key, if set).
        None => Client::from_env()?,
        Some(_) => Client::new(target.builder().build()?),
    };
    let agent = client
        .agent(target.model())
        .preamble("Отвечай кратко.")
        .build();

    // The first prompt obtains a token; later ones reuse it.
    let answer = agent.prompt("Привет!").await?;
    println!("answer: {}", answer.output());

    // Streaming: text deltas as the Server-Sent Events arrive.
    print!("streamed: ");
    let mut stream = agent.prompt("Расскажи о Rust в двух словах").stream();
    while let Some(item) = stream.next().await {
        if let MultiTurnStreamItem::StreamAssistantItem(Item::Event(StreamEvent::Text {
            text,
            ..
        })) = item?
        {
            print!("{text}");
            std::io::stdout().flush()?;
        }
    }
    println!();

    let stats = client.inference().stats();
    println!(
        "{} requests, {:.1}% ok, {} token refresh(es)",
        stats.total_requests, stats.success_rate, stats.successful_refreshes
    );
    Ok(())
}
