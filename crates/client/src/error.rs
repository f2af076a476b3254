//! The one public error type of the client.

use std::time::Duration;

use evolution_fallback::BothKeysRejected;
use evolution_token::{BoxError, TokenError, certificate_error};
use http::StatusCode;

/// Everything a call can fail with. Messages say what happened and what to check,
/// and never contain a secret or a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client was configured with something unusable.
    #[error("invalid configuration of `{field}`: {message}")]
    Config {
        /// The builder method or environment variable to fix.
        field: &'static str,
        /// What is wrong and what is expected.
        message: String,
    },
    /// No token could be obtained (wrong key, IAM down, ...).
    #[error(transparent)]
    Auth(#[from] TokenError),
    /// Both the primary and the backup key were rejected.
    #[error(transparent)]
    KeysRejected(Box<BothKeysRejected>),
    /// The API answered with an error status, or sent an error inside a stream after its
    /// `200` head (then `status` is the error's `code` when that is an HTTP error status,
    /// else [`STREAM_ERROR_STATUS`](crate::STREAM_ERROR_STATUS)).
    #[error("the Evolution API answered {status}: {message}{hint}", hint = api_hint(*status))]
    Api {
        /// The HTTP status.
        status: StatusCode,
        /// The server's error message (from its JSON body), or the status text.
        message: String,
        /// The server's error code, when it sent one.
        code: Option<String>,
    },
    /// The API's TLS certificate does not chain to a trusted root (or is expired, or names
    /// another host). Not retried: it fails the same way every time.
    #[error(
        "the TLS certificate of the Evolution API is not trusted ({problem}): check the base URL, and that the system trust store (or the file SSL_CERT_FILE names) holds the CA that signed it"
    )]
    UntrustedCertificate {
        /// What the TLS stack found wrong with the certificate.
        problem: String,
        /// The transport error.
        #[source]
        source: BoxError,
    },
    /// The request could not be sent or the answer could not be read.
    #[error("request to the Evolution API failed: {0}; check the network and the base URL")]
    Transport(#[source] BoxError),
    /// No answer in time.
    #[error(
        "no answer from the Evolution API within {0:?}: the server is slow or unreachable; raise the timeout or try again"
    )]
    Timeout(Duration),
    /// The answer was not what the OpenAI-compatible protocol promises.
    #[error(
        "unexpected answer from the Evolution API: {0}; check that the base URL points to an OpenAI-compatible endpoint"
    )]
    Decode(String),
}

fn api_hint(status: StatusCode) -> &'static str {
    match status.as_u16() {
        300..=399 => {
            " (redirects are not followed, as requests carry the token: check the base URL, and set it to the new address if you trust it)"
        }
        401 => " (the token was rejected even after a refresh: check the key's permissions)",
        403 => " (the key may not use this model or project: check its service account roles)",
        404 => " (check the base URL and the model name)",
        429 => " (rate limited: slow down or retry later)",
        500..=599 => " (server error: retry later)",
        _ => "",
    }
}

/// A shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn config(field: &'static str, message: impl Into<String>) -> Self {
        Self::Config {
            field,
            message: message.into(),
        }
    }

    /// Whether the key was rejected: by IAM (401/403), or by the API after a token refresh.
    pub fn is_auth(&self) -> bool {
        match self {
            Self::Auth(error) => error.is_auth(),
            Self::KeysRejected(_) => true,
            Self::Api { status, .. } => {
                *status == StatusCode::UNAUTHORIZED || *status == StatusCode::FORBIDDEN
            }
            _ => false,
        }
    }

    /// Whether the same call may succeed later: 408, 429, 5xx, network errors,
    /// timeouts, transient IAM errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Auth(error) => error.is_transient(),
            Self::Api { status, .. } => {
                matches!(status.as_u16(), 408 | 429) || status.is_server_error()
            }
            Self::Transport(_) | Self::Timeout(_) => true,
            Self::Config { .. }
            | Self::Decode(_)
            | Self::KeysRejected(_)
            | Self::UntrustedCertificate { .. } => false,
        }
    }

    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Sorts out an error from the tower stack.
    pub(crate) fn from_service(error: BoxError, timeout: Duration) -> Self {
        let error = match error.downcast::<BothKeysRejected>() {
            Ok(both) => return Self::KeysRejected(both),
            Err(error) => error,
        };
        let error = match error.downcast::<TokenError>() {
            Ok(token) => return Self::Auth(*token),
            Err(error) => error,
        };
        let error = match error.downcast::<Error>() {
            Ok(ours) => return *ours,
            Err(error) => error,
        };
        if error.is::<tower::timeout::error::Elapsed>() {
            return Self::Timeout(timeout);
        }
        if let Some(problem) = certificate_error(&*error) {
            return Self::UntrustedCertificate {
                problem: problem.to_string(),
                source: error,
            };
        }
        match error.downcast_ref::<reqwest::Error>() {
            Some(e) if e.is_timeout() => Self::Timeout(timeout),
            _ => Self::Transport(error),
        }
    }

    /// A redirect, which is not followed: its status and where it pointed (`location`
    /// resolved against `base_url`, without its query, which may carry anything).
    pub(crate) fn redirected(
        status: StatusCode,
        location: Option<&http::HeaderValue>,
        base_url: &str,
    ) -> Self {
        let target = location
            .and_then(|value| value.to_str().ok())
            .and_then(|location| url::Url::parse(base_url).ok()?.join(location).ok())
            .map(|mut target| {
                target.set_query(None);
                target.set_fragment(None);
                target
            });
        let message = match target {
            Some(target) => format!("a redirect to {target}"),
            None => "a redirect without a Location".to_owned(),
        };
        Self::Api {
            status,
            message,
            code: None,
        }
    }

    /// An error answer: status plus the server's message from an OpenAI-style body.
    pub(crate) fn from_answer(status: StatusCode, body: &[u8]) -> Self {
        #[derive(serde::Deserialize)]
        struct Envelope {
            error: Detail,
        }
        #[derive(serde::Deserialize)]
        struct Detail {
            message: Option<String>,
            code: Option<serde_json::Value>,
        }
        let (message, code) = match serde_json::from_slice::<Envelope>(body) {
            Ok(Envelope { error }) => (
                error.message,
                error.code.and_then(|c| match c {
                    serde_json::Value::String(s) => Some(s),
                    serde_json::Value::Null => None,
                    other => Some(other.to_string()),
                }),
            ),
            Err(_) => (None, None),
        };
        Self::Api {
            status,
            message: message.unwrap_or_else(|| {
                status
                    .canonical_reason()
                    .unwrap_or("unknown status")
                    .to_owned()
            }),
            code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_names_its_target_resolved_and_without_its_query() {
        let base = "https://foundation-models.api.cloud.ru/v1";
        let relative = http::HeaderValue::from_static("/v2/chat/completions?sig=abc#x");
        let error = Error::redirected(StatusCode::PERMANENT_REDIRECT, Some(&relative), base);
        let message = error.to_string();
        assert!(
            message.contains(
                "a redirect to https://foundation-models.api.cloud.ru/v2/chat/completions ("
            ),
            "{message}"
        );
        assert!(!message.contains("sig=abc"), "{message}");
        assert!(message.contains("check the base URL"), "{message}");
        let none = Error::redirected(StatusCode::FOUND, None, base);
        assert!(
            none.to_string().contains("a redirect without a Location"),
            "{none}"
        );
        assert!(!none.is_retryable() && !none.is_auth());
    }
}
