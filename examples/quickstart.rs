//! Automatic token management: the token is fetched on the first call, cached, and
//! refreshed before it expires. Port of the reference's first example.
//!
//! `cargo run --example quickstart`

use evolution_examples::Target;

#[tokio::main]
async fn main() -> Result<(), evolution_client::Error> {
    let target = Target::pick().await;
    let llm = target.builder().build()?;

    // The first request obtains a token automatically.
    let answer = llm.invoke("Привет!").await?;
    println!("answer: {answer}");

    // Later requests reuse it.
    let answer = llm.invoke("Как дела?").await?;
    println!("answer: {answer}");

    let info = llm.token_manager().info();
    println!(
        "token cached: {}, expires in {:?}",
        info.has_token,
        info.expires_in.unwrap_or_default()
    );
    if let Some(emulator) = target.emulator() {
        println!("IAM requests made: {}", emulator.stats().iam_requests);
    }
    Ok(())
}
