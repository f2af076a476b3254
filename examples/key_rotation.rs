//! Key rotation without a restart (the reference's `KeyRotationManager`): replace the
//! key while requests are running; the old key's token is dropped at once.
//!
//! `cargo run --example key_rotation`

use evolution_examples::Target;
use evolution_token::Credentials;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = Target::pick().await;
    let (new_key_id, new_secret) = match target.emulator() {
        Some(emulator) => {
            emulator.add_key("rotated-key", "rotated-secret");
            ("rotated-key".to_owned(), "rotated-secret".to_owned())
        }
        None => (
            std::env::var("EVOLUTION_BACKUP_KEY_ID")?,
            std::env::var("EVOLUTION_BACKUP_SECRET")?,
        ),
    };
    let llm = target.builder().build()?;
    println!("before: {}", llm.invoke("Привет!").await?);

    // Requests keep running while the key changes.
    let background = tokio::spawn({
        let llm = llm.clone();
        async move {
            for i in 0..20 {
                llm.invoke(format!("background {i}")).await?;
            }
            Ok::<_, evolution_client::Error>(())
        }
    });
    llm.token_manager()
        .set_credentials(Credentials::new(&new_key_id, new_secret))?;
    background.await??;

    println!("after:  {}", llm.invoke("Привет!").await?);
    println!("key in use: {}", llm.token_manager().key_id());
    Ok(())
}
