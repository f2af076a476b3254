//! async-openai's typed client on Evolution: its requests travel through evolution-rs's
//! stack (IAM token, 401 resend, retries, backup key, metrics) as its HTTP service.
//!
//! `cargo run -p evolution-examples --example async_openai`

use std::io::Write;

use async_openai::types::chat::{
    ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
    CreateChatCompletionRequestArgs,
};
use evolution_examples::Target;
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = Target::pick().await;
    // Cloud.ru: the EVOLUTION_* variables (and a backup key, if set). Keep the
    // EvolutionInference to read its statistics.
    let llm = target.builder().build()?;
    // No OpenAI key and no retry of async-openai's: the stack does both.
    let openai = evolution_client::async_openai::client(&llm);

    let request = CreateChatCompletionRequestArgs::default()
        .model(target.model())
        .messages([
            ChatCompletionRequestSystemMessage::from("Отвечай кратко.").into(),
            ChatCompletionRequestUserMessage::from("Привет!").into(),
        ])
        .max_completion_tokens(256_u32)
        .build()?;
    let answer = openai.chat().create(request).await?;
    let text = answer.choices[0]
        .message
        .content
        .as_deref()
        .unwrap_or_default();
    println!("answer: {text}");

    // Streaming: chunks as the Server-Sent Events arrive.
    let request = CreateChatCompletionRequestArgs::default()
        .model(target.model())
        .messages([ChatCompletionRequestUserMessage::from("Расскажи о Rust в двух словах").into()])
        .stream(true)
        .build()?;
    let mut stream = openai.chat().create_stream(request).await?;
    print!("streamed: ");
    while let Some(chunk) = stream.next().await {
        if let Some(piece) = chunk?.choices.first().and_then(|c| c.delta.content.clone()) {
            print!("{piece}");
            std::io::stdout().flush()?;
        }
    }
    println!();

    let stats = llm.stats();
    println!(
        "{} requests, {:.1}% ok, {} token refresh(es)",
        stats.total_requests, stats.success_rate, stats.successful_refreshes
    );
    Ok(())
}
