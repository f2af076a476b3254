//! Configuration from environment variables (and a `.env` file), as in the reference's
//! "Использование переменных окружения" section:
//!
//! ```text
//! export EVOLUTION_KEY_ID=...  EVOLUTION_SECRET=...  EVOLUTION_BASE_URL=...
//! export EVOLUTION_MODEL=...   EVOLUTION_TOKEN_URL=... # optional
//! ```
//!
//! `cargo run --example env_config`. On the embedded emulator it plays the shell's
//! part: it runs itself again as a child process with those variables exported.

use evolution_client::EvolutionInference;
use evolution_emulator::{DEMO_KEY_ID, DEMO_MODEL, DEMO_SECRET};
use evolution_examples::Target;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = Target::pick().await;
    if let Some(emulator) = target.emulator() {
        let status = std::process::Command::new(std::env::current_exe()?)
            .env("EVOLUTION_KEY_ID", DEMO_KEY_ID)
            .env("EVOLUTION_SECRET", DEMO_SECRET)
            .env("EVOLUTION_BASE_URL", emulator.base_url())
            .env("EVOLUTION_TOKEN_URL", emulator.auth_url())
            .env("EVOLUTION_MODEL", DEMO_MODEL)
            .status()?;
        if !status.success() {
            return Err(format!("the child process failed: {status}").into());
        }
        return Ok(());
    }
    // The whole configuration comes from EVOLUTION_* (and `.env`, if present).
    let llm = EvolutionInference::from_env()?;
    println!(
        "model `{}`, tokens from {}",
        llm.model(),
        llm.token_manager().auth_url()
    );
    println!("answer: {}", llm.invoke("Привет!").await?);
    Ok(())
}
