//! `evolution token`.

use std::time::Duration;

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::args::TokenArgs;
use crate::failure::{Failure, one_line};
use crate::target::Target;
use evolution_client::token::TokenManager;

pub(crate) async fn run(args: TokenArgs) -> Result<(), Failure> {
    let target = Target::build(&args.target, |builder, _| builder).await?;
    let deployments = target.client.deployments();
    let http = http_client()?;
    if deployments.is_empty() {
        let client = &target.client;
        let report = check(
            &http,
            client.token_manager(),
            client.base_url(),
            args.show_token,
        )
        .await?;
        println!("{report:#}");
        return Ok(());
    }
    // A pool: every key is checked, and each one's result printed, before the verdict.
    let mut reports = Vec::with_capacity(deployments.len());
    let mut failures = Vec::new();
    for deployment in deployments {
        let name = deployment.name();
        let checked = check(
            &http,
            deployment.token_manager(),
            deployment.base_url(),
            args.show_token,
        )
        .await;
        match checked {
            Ok(mut report) => {
                report["deployment"] = json!(name);
                reports.push(report);
            }
            Err(failure) => {
                let message = match &failure {
                    Failure::Config(m) | Failure::Auth(m) | Failure::Other(m) => m.clone(),
                };
                reports.push(json!({ "deployment": name, "error": message }));
                failures.push((name.to_owned(), failure));
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

/// How long the API may take to answer the check of a static API key.
const API_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// For the check of static API keys: no redirect is followed (the request carries the key).
fn http_client() -> Result<reqwest::Client, Failure> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(API_CHECK_TIMEOUT)
        .build()
        .map_err(|error| Failure::Other(format!("cannot create an HTTP client: {error}")))
}

/// Checks a key and describes it (never the key's secret; the token only with
/// `show_token`). An IAM key is checked by obtaining a token; a static API key, which IAM
/// does not know, by the API itself: `GET {base_url}/models` with it.
async fn check(
    http: &reqwest::Client,
    tokens: &TokenManager,
    base_url: &str,
    show_token: bool,
) -> Result<Value, Failure> {
    let token = tokens
        .get_token()
        .await
        .map_err(evolution_client::Error::from)?;
    // A static API key has no expiry the client knows of: its label (never the key) and
    // the API's verdict are all there is to report.
    let mut report = if tokens.is_api_key() {
        let url = format!("{}/models", base_url.trim_end_matches('/'));
        let answer = http
            .get(&url)
            .bearer_auth(token.secret().expose_secret())
            .send()
            .await
            .map_err(|error| {
                Failure::Other(format!(
                    "cannot check the API key `{}` at {url}: {}",
                    tokens.key_id(),
                    one_line(&error.without_url())
                ))
            })?;
        let status = answer.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Failure::Auth(format!(
                "the API refused the API key `{}`: {status} at {url}",
                tokens.key_id()
            )));
        }
        if !status.is_success() {
            return Err(Failure::Other(format!(
                "the API answered {status} to the check of the API key `{}` at {url}",
                tokens.key_id()
            )));
        }
        json!({ "key_id": tokens.key_id().as_ref(), "api_key": true, "checked": format!("GET {url}: {status}") })
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
