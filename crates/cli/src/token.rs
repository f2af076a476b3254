//! `evolution token`.

use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::args::TokenArgs;
use crate::failure::Failure;
use crate::target::Target;
use evolution_client::token::TokenManager;

pub(crate) async fn run(args: TokenArgs) -> Result<(), Failure> {
    let target = Target::build(&args.target, |builder, _| builder).await?;
    let deployments = target.client.deployments();
    if deployments.is_empty() {
        let report = check(target.client.token_manager(), args.show_token).await?;
        println!("{report:#}");
        return Ok(());
    }
    // A pool: every key is checked, and each one's result printed, before the verdict.
    let mut reports = Vec::with_capacity(deployments.len());
    let mut failures = Vec::new();
    for (name, tokens) in deployments {
        match check(tokens, args.show_token).await {
            Ok(mut report) => {
                report["deployment"] = json!(&**name);
                reports.push(report);
            }
            Err(failure) => {
                let message = match &failure {
                    Failure::Config(m) | Failure::Auth(m) | Failure::Other(m) => m.clone(),
                };
                reports.push(json!({ "deployment": &**name, "error": message }));
                failures.push((name.clone(), failure));
            }
        }
    }
    println!("{:#}", Value::Array(reports));
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0).1),
        n => {
            let names: Vec<String> = failures
                .iter()
                .map(|(name, _)| format!("`{name}`"))
                .collect();
            // The worst exit code wins: a rejected key is what the command checks for.
            let auth = failures.iter().any(|(_, f)| matches!(f, Failure::Auth(_)));
            let message = format!(
                "{n} of {} keys failed: {}",
                deployments.len(),
                names.join(", ")
            );
            Err(if auth {
                Failure::Auth(message)
            } else {
                Failure::Other(message)
            })
        }
    }
}

/// Obtains a token with `tokens` and describes it (never the key's secret; the token only
/// with `show_token`).
async fn check(tokens: &TokenManager, show_token: bool) -> Result<Value, Failure> {
    let token = tokens
        .get_token()
        .await
        .map_err(evolution_client::Error::from)?;
    // A static API key has no IAM exchange and no expiry the client knows of: its
    // label (never the key) is all there is to report.
    let mut report = if tokens.is_api_key() {
        json!({ "key_id": tokens.key_id().as_ref(), "api_key": true })
    } else {
        json!({
            "key_id": tokens.key_id().as_ref(),
            "auth_url": tokens.auth_url(),
            "expires_in_secs": token.expires_in().as_secs(),
        })
    };
    if show_token {
        report["access_token"] = json!(token.secret().expose_secret());
    }
    Ok(report)
}
