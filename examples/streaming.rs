//! Streaming: chunks printed as they arrive (Server-Sent Events).
//!
//! `cargo run --example streaming`

use std::io::Write;

use evolution_client::ChatRequest;
use evolution_examples::Target;
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), evolution_client::Error> {
    let target = Target::pick().await;
    let llm = target.builder().build()?;
    let mut stream = llm
        .stream(
            ChatRequest::new()
                .system("Отвечай кратко.")
                .user("Расскажи о Rust в двух словах"),
        )
        .await?;
    let mut stdout = std::io::stdout();
    while let Some(chunk) = stream.next().await {
        print!("{}", chunk?.text());
        let _ = stdout.flush();
    }
    println!();
    Ok(())
}
