//! An alternative IAM endpoint (`auth_url`), as in the reference's
//! "Альтернативный auth URL" section.
//!
//! `cargo run --example custom_auth_url`

use evolution_examples::Target;

#[tokio::main]
async fn main() -> Result<(), evolution_client::Error> {
    let target = Target::pick().await;
    let auth_url = match target.emulator() {
        Some(emulator) => emulator.auth_url(),
        None => std::env::var("EVOLUTION_TOKEN_URL")
            .unwrap_or_else(|_| evolution_token::DEFAULT_AUTH_URL.to_owned()),
    };
    let llm = target.builder().auth_url(&auth_url).build()?;
    println!("tokens from {}", llm.token_manager().auth_url());
    println!("answer: {}", llm.invoke("Привет!").await?);
    Ok(())
}
