//! The IAM exchange: one `POST {auth_url}` per attempt, bounded retries on transient failures.

use std::sync::Arc;

use http::{StatusCode, header};
use rand::Rng;
use secrecy::ExposeSecret;
use tokio::time::{Duration, Instant};

use crate::{Credentials, TokenError, TokenGrant, parse_token_response};

/// How the IAM exchange is made and retried.
#[derive(Debug, Clone)]
pub(crate) struct IamClient {
    pub(crate) http: reqwest::Client,
    pub(crate) url: reqwest::Url,
    pub(crate) auth_url: Arc<str>,
    pub(crate) timeout: Duration,
    pub(crate) attempts: u32,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_cap: Duration,
}

/// A token and when the request that produced it was sent.
pub(crate) struct Fetched {
    pub(crate) grant: TokenGrant,
    pub(crate) sent_at: Instant,
}

enum Attempt {
    Done(Result<Fetched, TokenError>),
    Transient(TokenError),
}

impl IamClient {
    /// Exchanges the key for a token, retrying 408/429/5xx, network errors and
    /// timeouts up to `attempts` times with full-jitter exponential backoff.
    pub(crate) async fn fetch(&self, credentials: &Credentials) -> Result<Fetched, TokenError> {
        let mut attempt = 1;
        loop {
            match self.attempt(credentials, attempt).await {
                Attempt::Done(result) => return result,
                Attempt::Transient(error) if attempt >= self.attempts => return Err(error),
                Attempt::Transient(error) => {
                    let delay = self.backoff(attempt);
                    tracing::warn!(
                        key_id = credentials.key_id(),
                        attempt,
                        ?delay,
                        error = %error,
                        "IAM token request failed, retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .backoff_base
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(self.backoff_cap);
        exp.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    async fn attempt(&self, credentials: &Credentials, attempt: u32) -> Attempt {
        let body = serde_json::json!({
            "keyId": credentials.key_id(),
            "secret": credentials.secret().expose_secret(),
        })
        .to_string();
        tracing::debug!(key_id = credentials.key_id(), attempt, auth_url = %self.auth_url, "requesting IAM token");
        let sent_at = Instant::now();
        let request = self
            .http
            .post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send();
        let answer = tokio::time::timeout(self.timeout, async {
            let response = request.await?;
            let status = response.status();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        })
        .await;
        let (status, body) = match answer {
            Err(_elapsed) => {
                return Attempt::Transient(TokenError::Timeout {
                    timeout: self.timeout,
                    attempts: attempt,
                    auth_url: self.auth_url.clone(),
                });
            }
            Ok(Err(error)) => {
                return Attempt::Transient(TokenError::Network {
                    attempts: attempt,
                    auth_url: self.auth_url.clone(),
                    source: Arc::new(error.without_url()),
                });
            }
            Ok(Ok(answer)) => answer,
        };
        let key_id = credentials.shared_key_id();
        Attempt::Done(match status {
            s if s.is_success() => parse_token_response(&body)
                .map(|grant| Fetched { grant, sent_at })
                .map_err(|reason| TokenError::InvalidResponse {
                    reason,
                    auth_url: self.auth_url.clone(),
                }),
            StatusCode::UNAUTHORIZED => Err(TokenError::InvalidCredentials { key_id }),
            StatusCode::FORBIDDEN => Err(TokenError::Forbidden { key_id }),
            s if s == StatusCode::REQUEST_TIMEOUT
                || s == StatusCode::TOO_MANY_REQUESTS
                || s.is_server_error() =>
            {
                return Attempt::Transient(TokenError::Unavailable {
                    status: s,
                    attempts: attempt,
                    auth_url: self.auth_url.clone(),
                });
            }
            s => Err(TokenError::UnexpectedStatus {
                status: s,
                auth_url: self.auth_url.clone(),
            }),
        })
    }
}
