//! The IAM exchange: one `POST {auth_url}` per attempt, bounded retries on transient failures.

use std::sync::Arc;

use http::{HeaderMap, StatusCode, header};
use secrecy::ExposeSecret;
use tokio::time::{Duration, Instant};

use crate::backoff::Exponential;
use crate::certificate::certificate_error;
use crate::retry_after::retry_after;
use crate::{Credentials, TokenError, TokenGrant, parse_token_response};

/// How the IAM exchange is made and retried.
#[derive(Debug, Clone)]
pub(crate) struct IamClient {
    /// Must follow no redirect: the request carries the secret.
    pub(crate) http: reqwest::Client,
    pub(crate) url: reqwest::Url,
    pub(crate) auth_url: Arc<str>,
    pub(crate) timeout: Duration,
    pub(crate) attempts: u32,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_cap: Duration,
    /// The longest `Retry-After` honoured; IAM asking for more ends the fetch.
    pub(crate) max_retry_after: Duration,
}

/// A token and when the request that produced it was sent.
pub(crate) struct Fetched {
    pub(crate) grant: TokenGrant,
    pub(crate) sent_at: Instant,
}

enum Attempt {
    Done(Result<Fetched, TokenError>),
    Transient {
        error: TokenError,
        /// IAM's own `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
}

impl IamClient {
    /// Exchanges the key for a token, retrying 408/429/5xx, network errors and
    /// timeouts up to `attempts` times with jittered exponential backoff, or after
    /// IAM's `Retry-After` when that is longer. A `Retry-After` beyond `max_retry_after`
    /// ends the fetch at once with [`TokenError::Throttled`].
    pub(crate) async fn fetch(&self, credentials: &Credentials) -> Result<Fetched, TokenError> {
        let mut attempt = 1;
        loop {
            let (error, retry_after) = match self.attempt(credentials, attempt).await {
                Attempt::Done(result) => return result,
                Attempt::Transient { error, retry_after } => (error, retry_after),
            };
            if let (Some(wait), TokenError::Unavailable { status, .. }) = (retry_after, &error)
                && wait > self.max_retry_after
            {
                return Err(TokenError::Throttled {
                    status: *status,
                    retry_after: wait,
                    attempts: attempt,
                    auth_url: self.auth_url.clone(),
                });
            }
            if attempt >= self.attempts {
                return Err(error);
            }
            let delay = self
                .backoff()
                .delay(attempt)
                .max(retry_after.unwrap_or_default());
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

    /// The pauses between attempts: `backoff_base × 2ⁿ⁻¹` after the n-th failed one,
    /// capped at `backoff_cap`, jittered over its later half.
    fn backoff(&self) -> Exponential {
        Exponential::new(self.backoff_base, self.backoff_cap)
    }

    /// The longest a fetch can take: every attempt timing out, and between attempts the
    /// longer of the backoff ceiling and the longest `Retry-After` honoured.
    #[cfg(feature = "shared-cache")]
    pub(crate) fn longest(&self) -> Duration {
        (1..self.attempts).fold(
            self.timeout.saturating_mul(self.attempts),
            |total, attempt| {
                let pause = self.backoff().ceiling(attempt).max(self.max_retry_after);
                total.saturating_add(pause)
            },
        )
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
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        })
        .await;
        let (status, headers, body) = match answer {
            Err(_elapsed) => {
                return Attempt::Transient {
                    error: TokenError::Timeout {
                        timeout: self.timeout,
                        attempts: attempt,
                        auth_url: self.auth_url.clone(),
                    },
                    retry_after: None,
                };
            }
            Ok(Err(error)) => return self.failed(error, attempt),
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
            s if s.is_redirection() => Err(self.redirected(s, &headers)),
            StatusCode::UNAUTHORIZED => Err(TokenError::InvalidCredentials { key_id }),
            StatusCode::FORBIDDEN => Err(TokenError::Forbidden { key_id }),
            s if s == StatusCode::REQUEST_TIMEOUT
                || s == StatusCode::TOO_MANY_REQUESTS
                || s.is_server_error() =>
            {
                return Attempt::Transient {
                    error: TokenError::Unavailable {
                        status: s,
                        attempts: attempt,
                        auth_url: self.auth_url.clone(),
                    },
                    retry_after: retry_after(&headers),
                };
            }
            s => Err(TokenError::UnexpectedStatus {
                status: s,
                auth_url: self.auth_url.clone(),
            }),
        })
    }

    /// No answer: a certificate that is not trusted is final, anything else may pass.
    fn failed(&self, error: reqwest::Error, attempt: u32) -> Attempt {
        let error = error.without_url();
        if let Some(problem) = certificate_error(&error) {
            return Attempt::Done(Err(TokenError::UntrustedCertificate {
                auth_url: self.auth_url.clone(),
                problem: Arc::from(problem.to_string()),
                source: Arc::new(error),
            }));
        }
        Attempt::Transient {
            error: TokenError::Network {
                attempts: attempt,
                auth_url: self.auth_url.clone(),
                source: Arc::new(error),
            },
            retry_after: None,
        }
    }

    /// A 3xx, reported with the origin it pointed to (never its path or query, which may
    /// carry anything).
    fn redirected(&self, status: StatusCode, headers: &HeaderMap) -> TokenError {
        let location = headers
            .get(header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|location| self.url.join(location).ok())
            .map(|target| target.origin())
            .filter(url::Origin::is_tuple)
            .map(|origin| Arc::from(origin.ascii_serialization()));
        TokenError::Redirected {
            status,
            location,
            auth_url: self.auth_url.clone(),
        }
    }
}
