//! When to switch: [`SwitchPolicy`], its two ready-made answers and the [`SwitchReason`] they give.
//!
//! The default, [`AuthFailure`], moves traffic only when a key is rejected: a backup key helps
//! there and nowhere else. [`EndpointFailure`] also moves it on server errors and failed
//! requests, for a backup that is a different endpoint. The rules are public functions
//! ([`auth_failure`], [`endpoint_failure`]) so a policy of your own can reuse them.

use std::error::Error;
use std::fmt;

use evolution_token::{TokenError, TokenErrorKind};
use http::{HeaderMap, StatusCode};

/// What one side answered, as a [`SwitchPolicy`] sees it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Outcome<'a> {
    /// The side answered (after its own token refresh-and-resend, when it has an auth layer).
    /// Only the head is shown: a streamed body has not been read when the decision is made.
    Response {
        /// The status.
        status: StatusCode,
        /// The headers.
        headers: &'a HeaderMap,
    },
    /// The side failed without an answer: a token error, a timeout, a connection error, ...
    Error(&'a (dyn Error + Send + Sync + 'static)),
}

/// Why traffic moves (or would move) to the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SwitchReason {
    /// The API answered 401 even after the side's own token refresh: the key's tokens are
    /// refused (the key was disabled or deleted, or its tokens revoked).
    Unauthorized,
    /// The API answered 403: the key may not do this.
    Forbidden,
    /// IAM rejected the key when a token was fetched ([`TokenError::is_auth`]).
    KeyRejected(TokenErrorKind),
    /// The API answered with a server error ([`EndpointFailure`] only).
    ServerError(StatusCode),
    /// The request failed without an answer ([`EndpointFailure`] only).
    Unavailable,
    /// A reason of a policy of your own; the name is its metric label (keep it snake_case).
    Custom(&'static str),
}

impl SwitchReason {
    /// Whether the key itself was refused (401 or 403, from the API or from IAM).
    pub fn is_auth(self) -> bool {
        matches!(
            self,
            Self::Unauthorized | Self::Forbidden | Self::KeyRejected(_)
        )
    }

    /// A short snake_case name, stable for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "api_unauthorized",
            Self::Forbidden => "api_forbidden",
            Self::KeyRejected(TokenErrorKind::Forbidden) => "iam_forbidden",
            Self::KeyRejected(_) => "iam_invalid_credentials",
            Self::ServerError(_) => "server_error",
            Self::Unavailable => "unavailable",
            Self::Custom(name) => name,
        }
    }
}

impl fmt::Display for SwitchReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unauthorized => {
                f.write_str("the API answered 401 Unauthorized after a token refresh")
            }
            Self::Forbidden => f.write_str("the API answered 403 Forbidden"),
            Self::KeyRejected(TokenErrorKind::InvalidCredentials) => {
                f.write_str("IAM answered 401: wrong key id or secret, or the key is disabled")
            }
            Self::KeyRejected(TokenErrorKind::Forbidden) => {
                f.write_str("IAM answered 403: the key may not obtain tokens")
            }
            Self::KeyRejected(kind) => write!(f, "IAM rejected the key ({})", kind.as_str()),
            Self::ServerError(status) => write!(f, "the API answered {status}"),
            Self::Unavailable => f.write_str("the request failed without an answer"),
            Self::Custom(name) => f.write_str(name),
        }
    }
}

/// Decides which outcomes of the active side move traffic to the other side.
///
/// Any `Fn(Outcome<'_>) -> Option<SwitchReason>` that is `Clone` is a policy. Also switch
/// on `429 Too Many Requests`, since the backup key has its own quota:
///
/// ```
/// use evolution_fallback::{FallbackLayer, Outcome, SwitchReason, auth_failure};
/// use http::StatusCode;
///
/// # let backup = tower::service_fn(|_: http::Request<String>| async {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// # });
/// let layer = FallbackLayer::new(backup).policy(|outcome: Outcome<'_>| match outcome {
///     Outcome::Response { status: StatusCode::TOO_MANY_REQUESTS, .. } => {
///         Some(SwitchReason::Custom("rate_limited"))
///     }
///     other => auth_failure(other),
/// });
/// # drop(layer);
/// ```
pub trait SwitchPolicy {
    /// `Some(reason)` if this outcome should move traffic to the other side (and the same
    /// request be resent there); `None` to hand it to the caller.
    fn switch_reason(&self, outcome: Outcome<'_>) -> Option<SwitchReason>;
}

impl<F> SwitchPolicy for F
where
    F: Fn(Outcome<'_>) -> Option<SwitchReason>,
{
    fn switch_reason(&self, outcome: Outcome<'_>) -> Option<SwitchReason> {
        self(outcome)
    }
}

/// The default policy: switch when the key is rejected. See [`auth_failure`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthFailure;

impl SwitchPolicy for AuthFailure {
    fn switch_reason(&self, outcome: Outcome<'_>) -> Option<SwitchReason> {
        auth_failure(outcome)
    }
}

/// Endpoint fallback: switch when the key is rejected, the API answers 5xx or the request
/// fails without an answer — not when IAM is down, which both keys share. See
/// [`endpoint_failure`].
///
/// Off by default. A request that timed out or lost its connection may have been processed
/// before it is resent to the other side: choose this when availability matters more.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointFailure;

impl SwitchPolicy for EndpointFailure {
    fn switch_reason(&self, outcome: Outcome<'_>) -> Option<SwitchReason> {
        endpoint_failure(outcome)
    }
}

/// The [`AuthFailure`] rule:
///
/// - a `401` answer (it comes after the side's own refresh-and-resend, so the key's tokens are
///   refused, not merely expired) → [`SwitchReason::Unauthorized`];
/// - a `403` answer → [`SwitchReason::Forbidden`];
/// - an error with a [`TokenError`] for which [`TokenError::is_auth`] holds (IAM answered 401
///   or 403), found in the error or its `source()` chain → [`SwitchReason::KeyRejected`];
/// - anything else, 5xx included → `None`: the retry layer above deals with it.
///
/// ```
/// use evolution_fallback::{Outcome, SwitchReason, auth_failure};
/// use http::{HeaderMap, StatusCode};
///
/// let headers = HeaderMap::new();
/// let answer = |status| Outcome::Response { status, headers: &headers };
/// assert_eq!(auth_failure(answer(StatusCode::UNAUTHORIZED)), Some(SwitchReason::Unauthorized));
/// assert_eq!(auth_failure(answer(StatusCode::SERVICE_UNAVAILABLE)), None);
/// ```
pub fn auth_failure(outcome: Outcome<'_>) -> Option<SwitchReason> {
    match outcome {
        Outcome::Response { status, .. } => match status {
            StatusCode::UNAUTHORIZED => Some(SwitchReason::Unauthorized),
            StatusCode::FORBIDDEN => Some(SwitchReason::Forbidden),
            _ => None,
        },
        Outcome::Error(error) => find_token_error(error)
            .filter(|token| token.is_auth())
            .map(|token| SwitchReason::KeyRejected(token.kind())),
    }
}

/// The [`EndpointFailure`] rule: [`auth_failure`], and also
///
/// - any `5xx` answer → [`SwitchReason::ServerError`];
/// - any error → [`SwitchReason::Unavailable`], except a [`TokenError`] other than an auth
///   failure (IAM down, unreachable or slow, a bad configuration, an unusable IAM answer).
///
/// IAM is not the endpoint: both keys get their tokens from the same IAM (Cloud.ru has one,
/// `iam.api.cloud.ru`), so while it is down the backup's token manager would only repeat the
/// primary's IAM requests (IAM has one retry schedule, the token manager's). For a backup with
/// an IAM of its own, a policy of yours can also switch on
/// [`TokenError::is_transient`] errors:
///
/// ```
/// use evolution_fallback::{Outcome, SwitchReason, endpoint_failure};
/// use evolution_token::TokenError;
///
/// let own_iam = |outcome: Outcome<'_>| match outcome {
///     Outcome::Error(error)
///         if error.downcast_ref::<TokenError>().is_some_and(TokenError::is_transient) =>
///     {
///         Some(SwitchReason::Custom("iam_unavailable"))
///     }
///     other => endpoint_failure(other),
/// };
/// # drop(own_iam);
/// ```
///
/// ```
/// use evolution_fallback::{Outcome, SwitchReason, endpoint_failure};
/// use http::{HeaderMap, StatusCode};
///
/// let headers = HeaderMap::new();
/// let answer = |status| Outcome::Response { status, headers: &headers };
/// assert_eq!(
///     endpoint_failure(answer(StatusCode::BAD_GATEWAY)),
///     Some(SwitchReason::ServerError(StatusCode::BAD_GATEWAY)),
/// );
/// assert_eq!(endpoint_failure(answer(StatusCode::BAD_REQUEST)), None);
/// ```
pub fn endpoint_failure(outcome: Outcome<'_>) -> Option<SwitchReason> {
    if let Some(reason) = auth_failure(outcome) {
        return Some(reason);
    }
    match outcome {
        Outcome::Response { status, .. } if status.is_server_error() => {
            Some(SwitchReason::ServerError(status))
        }
        Outcome::Response { .. } => None,
        // An auth failure was handled above; any other token error is IAM's, not the endpoint's.
        Outcome::Error(error) => match find_token_error(error) {
            Some(_) => None,
            None => Some(SwitchReason::Unavailable),
        },
    }
}

/// The [`TokenError`] in `error` or its `source()` chain, outermost first.
pub(crate) fn find_token_error<'a>(
    error: &'a (dyn Error + Send + Sync + 'static),
) -> Option<&'a TokenError> {
    let mut next: Option<&'a (dyn Error + 'static)> = Some(error);
    while let Some(error) = next {
        if let Some(token) = error.downcast_ref::<TokenError>() {
            return Some(token);
        }
        next = error.source();
    }
    None
}
