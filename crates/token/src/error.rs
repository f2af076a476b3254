//! What can go wrong while obtaining a token.

use std::sync::Arc;

use http::StatusCode;
use tokio::time::Duration;

/// Why an IAM answer could not be used. Never contains the body itself: it may hold a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidResponseReason {
    /// The body is not JSON (or is empty).
    #[error("the body is not JSON")]
    NotJson,
    /// The JSON is not an object.
    #[error("the body is not a JSON object")]
    NotAnObject,
    /// No `access_token` field, or it is not a string.
    #[error("`access_token` is missing or not a string")]
    MissingAccessToken,
    /// `access_token` is empty or cannot be sent in an HTTP header.
    #[error("`access_token` is empty or has characters not allowed in a header")]
    InvalidAccessToken,
    /// `expires_in` is present but not a number.
    #[error("`expires_in` is not a number")]
    ExpiresInNotANumber,
    /// `expires_in` is zero or negative: the token would be expired on arrival.
    #[error("`expires_in` is zero or negative")]
    ExpiresInNotPositive,
}

/// A failure to obtain an IAM access token.
///
/// Messages say what to check and never contain the secret or a token.
/// It is `Clone` because one refresh answers every caller waiting for it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// IAM answered 401: the key id or the secret is wrong, or the key was deleted.
    #[error(
        "IAM rejected key id `{key_id}` (401 Unauthorized): check the key id and the secret, and that the key is not deleted or disabled"
    )]
    InvalidCredentials {
        /// The key id that was rejected.
        key_id: Arc<str>,
    },
    /// IAM answered 403: the key exists but may not obtain tokens.
    #[error(
        "IAM refused key id `{key_id}` (403 Forbidden): check that the key is active and its service account has access"
    )]
    Forbidden {
        /// The key id that was refused.
        key_id: Arc<str>,
    },
    /// IAM kept answering 429 or 5xx.
    #[error(
        "IAM at {auth_url} is unavailable ({status}) after {attempts} attempt(s): try again later, or check the auth URL"
    )]
    Unavailable {
        /// The last status seen.
        status: StatusCode,
        /// How many IAM requests were made.
        attempts: u32,
        /// Where they went.
        auth_url: Arc<str>,
    },
    /// IAM answered a status that neither a retry nor new credentials can fix (400, 404, ...).
    #[error(
        "IAM at {auth_url} answered {status}: check that the auth URL is the Cloud.ru IAM token endpoint"
    )]
    UnexpectedStatus {
        /// The status IAM answered.
        status: StatusCode,
        /// Where the request went.
        auth_url: Arc<str>,
    },
    /// IAM could not be reached.
    #[error(
        "could not reach IAM at {auth_url} after {attempts} attempt(s): check the network and the auth URL"
    )]
    Network {
        /// How many IAM requests were made.
        attempts: u32,
        /// Where they went.
        auth_url: Arc<str>,
        /// The transport error.
        #[source]
        source: Arc<reqwest::Error>,
    },
    /// IAM did not answer in time.
    #[error(
        "IAM at {auth_url} did not answer within {timeout:?} ({attempts} attempt(s)): check the network, or raise the fetch timeout"
    )]
    Timeout {
        /// The per-request limit.
        timeout: Duration,
        /// How many IAM requests were made.
        attempts: u32,
        /// Where they went.
        auth_url: Arc<str>,
    },
    /// No token came before the request's deadline, a [`Deadline`](crate::Deadline) above
    /// [`Auth`](crate::Auth) (in the client, `request_timeout` or `total_timeout`): IAM is
    /// slow or unreachable. The refresh is not cancelled: it goes on in the background, and a
    /// later request gets its token.
    #[error(
        "IAM at {auth_url} did not answer within {limit:?}, the time limit of this request: check the network and the auth URL, or allow the request more time"
    )]
    Deadline {
        /// The limit that ran out.
        limit: Duration,
        /// Where the token was requested.
        auth_url: Arc<str>,
    },
    /// IAM answered 200 with something that is not a usable token.
    #[error(
        "IAM at {auth_url} sent an unusable token response ({reason}): check that the auth URL is the Cloud.ru IAM token endpoint"
    )]
    InvalidResponse {
        /// What was wrong with it.
        reason: InvalidResponseReason,
        /// Where it came from.
        auth_url: Arc<str>,
    },
    /// IAM answered a redirect (3xx). It is never followed: the request carries the
    /// secret, and following would send it to wherever the redirect points.
    #[error(
        "IAM at {auth_url} answered {status}, a redirect {to}: it is not followed, as the token request carries the secret; check the auth URL, and set it to the new address if you trust it",
        to = redirect_target(location.as_deref())
    )]
    Redirected {
        /// The redirect status.
        status: StatusCode,
        /// Where it pointed: only the origin (`scheme://host:port`) of the `Location`, which
        /// is resolved against the auth URL; `None` when there was no usable `Location`.
        location: Option<Arc<str>>,
        /// Where the request went.
        auth_url: Arc<str>,
    },
    /// IAM's TLS certificate does not chain to a trusted root (or is expired, or names
    /// another host). A retry cannot fix that, so none is made.
    #[error(
        "the TLS certificate of IAM at {auth_url} is not trusted ({problem}): check the auth URL, and that the system trust store (or the file SSL_CERT_FILE names) holds the CA that signed it"
    )]
    UntrustedCertificate {
        /// Where the request went.
        auth_url: Arc<str>,
        /// What the TLS stack found wrong with the certificate.
        problem: Arc<str>,
        /// The transport error.
        #[source]
        source: Arc<reqwest::Error>,
    },
    /// IAM answered 429 or 5xx asking to wait longer (`Retry-After`) than a token request
    /// waits ([`MAX_FETCH_RETRY_AFTER`](crate::MAX_FETCH_RETRY_AFTER)): the fetch stops
    /// there rather than retry early into another refusal.
    #[error(
        "IAM at {auth_url} answered {status} and asked to wait {retry_after:?}, longer than a token request waits ({max:?}), after {attempts} attempt(s): try again after that",
        max = crate::MAX_FETCH_RETRY_AFTER
    )]
    Throttled {
        /// The status IAM answered.
        status: StatusCode,
        /// How long IAM asked to wait.
        retry_after: Duration,
        /// How many IAM requests were made.
        attempts: u32,
        /// Where they went.
        auth_url: Arc<str>,
    },
    /// The token manager was configured with something unusable.
    #[error("invalid token configuration of `{setting}`: {message}")]
    InvalidConfiguration {
        /// The setting to fix: a builder method (`auth_url`, `refresh_ahead`, ...),
        /// `key_id`, `secret` or `api_key`.
        setting: &'static str,
        /// What is wrong and what is expected.
        message: Arc<str>,
    },
    /// The refresh ended without an answer from IAM: its task panicked or its runtime shut
    /// down, or it could not start. It counts as a failed refresh (the manager backs off).
    #[error("the token refresh was aborted: {reason}")]
    Aborted {
        /// What happened.
        reason: AbortReason,
    },
}

/// Why a token refresh ended without an answer, in [`TokenError::Aborted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum AbortReason {
    /// Code run by the refresh panicked: an observer or the shared token store.
    #[error(
        "the refresh task panicked: check the token observers and the token store (the panic message was printed to stderr)"
    )]
    Panicked,
    /// The tokio runtime running the refresh shut down before it finished.
    #[error(
        "the tokio runtime running it shut down: use the token manager from a runtime that outlives it"
    )]
    RuntimeShutdown,
    /// There was no tokio runtime to run the refresh on.
    #[error("no tokio runtime is running: call the token manager from inside a tokio runtime")]
    NoRuntime,
}

/// "to http://host:port", or "without a Location".
fn redirect_target(location: Option<&str>) -> String {
    match location {
        Some(origin) => format!("to {origin}"),
        None => "without a Location".to_owned(),
    }
}

/// The kind of a [`TokenError`], without its data: for metric labels and matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenErrorKind {
    /// See [`TokenError::InvalidCredentials`].
    InvalidCredentials,
    /// See [`TokenError::Forbidden`].
    Forbidden,
    /// See [`TokenError::Unavailable`].
    Unavailable,
    /// See [`TokenError::UnexpectedStatus`].
    UnexpectedStatus,
    /// See [`TokenError::Network`].
    Network,
    /// See [`TokenError::Timeout`].
    Timeout,
    /// See [`TokenError::Deadline`].
    Deadline,
    /// See [`TokenError::InvalidResponse`].
    InvalidResponse,
    /// See [`TokenError::Redirected`].
    Redirected,
    /// See [`TokenError::UntrustedCertificate`].
    UntrustedCertificate,
    /// See [`TokenError::Throttled`].
    Throttled,
    /// See [`TokenError::InvalidConfiguration`].
    InvalidConfiguration,
    /// See [`TokenError::Aborted`].
    Aborted,
}

impl TokenErrorKind {
    /// A short snake_case name, stable for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidCredentials => "invalid_credentials",
            Self::Forbidden => "forbidden",
            Self::Unavailable => "unavailable",
            Self::UnexpectedStatus => "unexpected_status",
            Self::Network => "network",
            Self::Timeout => "timeout",
            Self::Deadline => "deadline",
            Self::InvalidResponse => "invalid_response",
            Self::Redirected => "redirected",
            Self::UntrustedCertificate => "untrusted_certificate",
            Self::Throttled => "throttled",
            Self::InvalidConfiguration => "invalid_configuration",
            Self::Aborted => "aborted",
        }
    }
}

impl TokenError {
    pub(crate) fn config(setting: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidConfiguration {
            setting,
            message: Arc::from(message.into()),
        }
    }

    /// The kind of this error.
    pub fn kind(&self) -> TokenErrorKind {
        match self {
            Self::InvalidCredentials { .. } => TokenErrorKind::InvalidCredentials,
            Self::Forbidden { .. } => TokenErrorKind::Forbidden,
            Self::Unavailable { .. } => TokenErrorKind::Unavailable,
            Self::UnexpectedStatus { .. } => TokenErrorKind::UnexpectedStatus,
            Self::Network { .. } => TokenErrorKind::Network,
            Self::Timeout { .. } => TokenErrorKind::Timeout,
            Self::Deadline { .. } => TokenErrorKind::Deadline,
            Self::InvalidResponse { .. } => TokenErrorKind::InvalidResponse,
            Self::Redirected { .. } => TokenErrorKind::Redirected,
            Self::UntrustedCertificate { .. } => TokenErrorKind::UntrustedCertificate,
            Self::Throttled { .. } => TokenErrorKind::Throttled,
            Self::InvalidConfiguration { .. } => TokenErrorKind::InvalidConfiguration,
            Self::Aborted { .. } => TokenErrorKind::Aborted,
        }
    }

    /// Whether trying again later may succeed (IAM overloaded, down, unreachable or slower
    /// than the request's deadline).
    ///
    /// Wrong or forbidden credentials, bad configuration, unusable answers, redirects and
    /// untrusted certificates are not transient.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. }
                | Self::Network { .. }
                | Self::Timeout { .. }
                | Self::Throttled { .. }
                | Self::Deadline { .. }
                | Self::Aborted { .. }
        )
    }

    /// How long IAM asked to wait before the next token request, when it said
    /// ([`TokenError::Throttled`]).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Whether the key itself was rejected (401 or 403 from IAM): a backup key may help, a retry will not.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            Self::InvalidCredentials { .. } | Self::Forbidden { .. }
        )
    }
}
