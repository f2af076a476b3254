//! `evolution token`.

use secrecy::ExposeSecret;
use serde_json::json;

use crate::args::TokenArgs;
use crate::failure::Failure;
use crate::target::Target;

pub(crate) async fn run(args: TokenArgs) -> Result<(), Failure> {
    let target = Target::build(&args.target, |builder, _| builder).await?;
    let tokens = target.client.token_manager();
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
    if args.show_token {
        report["access_token"] = json!(token.secret().expose_secret());
    }
    println!("{report:#}");
    Ok(())
}
