//! Fallback to a backup key, as in the reference's "Fallback механизм" section
//! (`FallbackEvolutionInference`). Give the client a backup key: when the primary key is
//! rejected (IAM refuses it, or the API keeps answering 401/403 after a fresh token), the
//! same request is resent with the backup key at once, and traffic stays there. The caller
//! never sees the failure.
//!
//! On the embedded emulator the primary key is disabled at IAM and its tokens revoked — what
//! happens when a key is deleted or blocked — and later enabled again. Against Cloud.ru
//! (set `EVOLUTION_BACKUP_KEY_ID` and `EVOLUTION_BACKUP_SECRET` too) your key cannot be
//! disabled from here, so the example switches by hand with `rotate()`, the reference's
//! `KeyRotationManager.rotate_keys()`.
//!
//! `cargo run --example fallback`

use evolution_client::{EvolutionInference, Failback};
use evolution_examples::Target;

const BACKUP_KEY_ID: &str = "backup-key-id";
const BACKUP_SECRET: &str = "backup-secret";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = Target::pick().await;
    let mut builder = target.builder();
    if let Some(emulator) = target.emulator() {
        emulator.add_key(BACKUP_KEY_ID, BACKUP_SECRET);
        builder = builder.backup_credentials(BACKUP_KEY_ID, BACKUP_SECRET);
    } else if std::env::var_os("EVOLUTION_BACKUP_KEY_ID").is_none() {
        return Err(
            "set EVOLUTION_BACKUP_KEY_ID and EVOLUTION_BACKUP_SECRET for this example".into(),
        );
    }
    // Sticky on the backup, as the reference; the default probes the primary again after
    // 5 minutes (`Failback::After`).
    let llm = builder.failback(Failback::Never).build()?;
    let fallback = llm.fallback().ok_or("no backup key configured")?;

    ask(&llm, "Привет!").await?;

    match target.emulator() {
        Some(emulator) => {
            let primary = llm.token_manager().key_id();
            println!("\nThe primary key `{primary}` is disabled at IAM and its tokens revoked.");
            emulator.disable_key(&primary);
            emulator.revoke_key(&primary);
            // The next call gets 401 with the cached token, cannot get a new one (IAM
            // answers 401 too), and is resent with the backup key.
            ask(&llm, "Ты здесь?").await?;
            ask(&llm, "А теперь?").await?;

            println!("\nThe primary key is enabled again; probe it on the next call.");
            emulator.enable_key(&primary);
            // After IAM refused it, the primary's token manager asks IAM again only once its
            // failure backoff is over (at most 1 s after one failure); a probe before that
            // would get the refusal again without asking.
            tokio::time::sleep(evolution_token::FAILED_REFRESH_BACKOFF_BASE).await;
            fallback.probe_now();
            ask(&llm, "Снова основной ключ?").await?;

            let seen = emulator.stats();
            println!(
                "\nthe emulator: IAM answers {:?}, chat calls by key {:?}",
                seen.iam_by_status, seen.chat_by_key
            );
        }
        None => {
            println!("\nSwitching to the backup key by hand (rotate).");
            fallback.rotate();
            ask(&llm, "Ты здесь?").await?;
            println!("\nAnd back (rotate again).");
            fallback.rotate();
            ask(&llm, "Снова основной ключ?").await?;
        }
    }
    println!(
        "\nswitches: {} · using the primary key: {}",
        fallback.switches(),
        llm.using_primary()
    );
    Ok(())
}

async fn ask(llm: &EvolutionInference, prompt: &str) -> Result<(), evolution_client::Error> {
    let answer = llm.invoke(prompt).await?;
    let key = match (llm.using_primary(), llm.backup_token_manager()) {
        (false, Some(backup)) => format!("backup key `{}`", backup.key_id()),
        _ => format!("primary key `{}`", llm.token_manager().key_id()),
    };
    println!(
        "{prompt:<22} → {answer}    [{key}; switches so far: {}]",
        llm.stats().fallback_switches
    );
    Ok(())
}
