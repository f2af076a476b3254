//! What to retry: [`Retryable`], the default rules, and the [`Classify`] trait the policy uses.
//!
//! Classification says *whether* a failure may succeed on a second try; when to try again is
//! the backoff's business. The default rules are public functions, so a custom [`Classify`]
//! can change one case and defer to them for the rest.

use std::error::Error;
use std::io;

use evolution_token::{TokenError, TokenErrorKind, is_certificate_error};
use http::{HeaderMap, StatusCode};
use tower::timeout::error::Elapsed;

use crate::error_body::is_quota_exhausted;
use crate::observe::RetryReason;

/// Whether a failed attempt is worth another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Retryable {
    /// It may succeed if tried again later: overload, an outage, a network fault.
    Transient,
    /// Trying again cannot help: the request, the credentials or the configuration is wrong.
    Fatal,
}

/// Decides what is retried. [`RetryPolicy`](crate::RetryPolicy) and
/// [`ReqwestRetryStrategy`](crate::ReqwestRetryStrategy) are generic over it.
///
/// Both methods default to the crate's rules ([`classify_status`], [`classify_error`]),
/// so an implementation overrides only what it changes.
///
/// # Example
///
/// Also retry `409 Conflict`:
///
/// ```
/// use evolution_retry::{Classify, Retryable, classify_status};
/// use http::{HeaderMap, StatusCode};
///
/// #[derive(Debug, Clone, Copy)]
/// struct RetryConflicts;
///
/// impl Classify for RetryConflicts {
///     fn classify_response(&self, status: StatusCode, _: &HeaderMap) -> Option<Retryable> {
///         match status {
///             StatusCode::CONFLICT => Some(Retryable::Transient),
///             other => classify_status(other),
///         }
///     }
/// }
///
/// assert_eq!(
///     RetryConflicts.classify_response(StatusCode::CONFLICT, &HeaderMap::new()),
///     Some(Retryable::Transient),
/// );
/// ```
pub trait Classify {
    /// Classifies a response by its head. `None` means it is not a failure (1xx, 2xx, 3xx).
    ///
    /// Only the head is available: a streamed body has not been read when the decision is made.
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Option<Retryable> {
        let _ = headers;
        classify_status(status)
    }

    /// Classifies an error from the inner service.
    fn classify_error(&self, error: &(dyn Error + 'static)) -> Retryable {
        classify_error(error)
    }

    /// Classifies an answer whose body the transport buffered ([`ErrorBody`](crate::ErrorBody): the bodies of
    /// error statuses, which are small), or by its head alone when `body` is `None`.
    ///
    /// The default: a body saying the quota is exhausted ([`is_quota_exhausted`]) is fatal
    /// whatever the status (a 429 that a retry cannot fix); otherwise
    /// [`classify_response`](Self::classify_response) decides.
    fn classify_answer(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> Option<Retryable> {
        let failed = status.is_client_error() || status.is_server_error();
        if failed && body.is_some_and(is_quota_exhausted) {
            return Some(Retryable::Fatal);
        }
        self.classify_response(status, headers)
    }
}

/// The crate's rules: [`classify_status`] and [`classify_error`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DefaultClassifier;

impl Classify for DefaultClassifier {}

/// The default rule for statuses.
///
/// - `None` (not a failure): 1xx, 2xx, 3xx.
/// - Transient: 408 Request Timeout, 429 Too Many Requests, 500 Internal Server Error,
///   502 Bad Gateway, 503 Service Unavailable, 504 Gateway Timeout.
/// - Fatal: every other 4xx (400, 401, 403, 404, 422, ...) and every other 5xx
///   (501 Not Implemented, 505 HTTP Version Not Supported, ...), which describe the request
///   or the server's abilities rather than a passing condition.
///
/// A 401 reaching the retry layer has already been through the auth layer's own
/// refresh-and-resend, so it means the credentials are wrong: a retry would repeat it.
///
/// ```
/// use evolution_retry::{Retryable, classify_status};
/// use http::StatusCode;
///
/// assert_eq!(classify_status(StatusCode::OK), None);
/// assert_eq!(classify_status(StatusCode::SERVICE_UNAVAILABLE), Some(Retryable::Transient));
/// assert_eq!(classify_status(StatusCode::BAD_REQUEST), Some(Retryable::Fatal));
/// ```
pub fn classify_status(status: StatusCode) -> Option<Retryable> {
    match status.as_u16() {
        408 | 429 | 500 | 502 | 503 | 504 => Some(Retryable::Transient),
        400..=599 => Some(Retryable::Fatal),
        _ => None,
    }
}

/// The default rule for errors. The error and then its [`source`](Error::source) chain are
/// searched, outermost first, for a type this crate knows:
///
/// - [`TokenError`]: fatal for this layer, except [`TokenError::Aborted`] (see
///   [`classify_token`]): IAM has one retry schedule, the token manager's, and the layers
///   above do not multiply it.
/// - [`tower::timeout::error::Elapsed`] (a per-attempt timeout): transient.
/// - A TLS certificate the client does not trust (unknown issuer, expired, another host's),
///   found by [`evolution_token::is_certificate_error`]: fatal. reqwest reports it as a
///   failure to connect, but it fails the same way every time.
/// - [`reqwest::Error`]: a failure to connect (nothing was sent; a connect timeout included),
///   a timeout, or a failure while sending the request (connection reset or closed before the
///   answer: it may have reached the server) is transient; a builder, redirect, body or decode
///   error is fatal (for a body error the server has already answered, and a resend would run
///   the request twice). Whether a request that may have reached the server is resent is the
///   configuration's business, by the [`RetryReason`]: `Timeout`, `Network` or `Connect`.
/// - [`reqwest_middleware::Error`]: the reqwest error or the middleware's error it holds, by
///   these same rules.
/// - [`std::io::Error`] of kind `ConnectionRefused`, `ConnectionReset`, `ConnectionAborted`,
///   `NotConnected`, `BrokenPipe`, `UnexpectedEof` or `TimedOut` (transports built on hyper
///   directly): transient.
///
/// Anything else is fatal: an error this crate does not recognise (a bug, a misconfiguration,
/// a layer refusing the request) would most likely be met again. Implement [`Classify`] to
/// decide otherwise.
///
/// Takes `&(dyn Error + 'static)`, so it serves both stacks: for a tower
/// [`BoxError`](evolution_token::BoxError) pass `&*error`.
///
/// ```
/// use evolution_retry::{Retryable, classify_error};
/// use evolution_token::BoxError;
///
/// let timeout: BoxError = Box::new(tower::timeout::error::Elapsed::new());
/// assert_eq!(classify_error(&*timeout), Retryable::Transient);
/// let unknown: BoxError = "something else".into();
/// assert_eq!(classify_error(&*unknown), Retryable::Fatal);
/// ```
pub fn classify_error(error: &(dyn Error + 'static)) -> Retryable {
    recognise(error).map_or(Retryable::Fatal, |(class, _)| class)
}

/// Why `error` failed, for events and metrics: the same search as [`classify_error`].
pub(crate) fn error_reason(error: &(dyn Error + 'static)) -> RetryReason {
    recognise(error).map_or(RetryReason::Other, |(_, reason)| reason)
}

/// The one search behind both [`classify_error`] and [`error_reason`].
fn recognise(error: &(dyn Error + 'static)) -> Option<(Retryable, RetryReason)> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(found) = recognise_one(error) {
            return Some(found);
        }
        next = error.source();
    }
    None
}

fn recognise_one(error: &(dyn Error + 'static)) -> Option<(Retryable, RetryReason)> {
    if let Some(token) = error.downcast_ref::<TokenError>() {
        return Some((classify_token(token), RetryReason::Token(token.kind())));
    }
    if error.is::<Elapsed>() {
        return Some((Retryable::Transient, RetryReason::Timeout));
    }
    if let Some(error) = error.downcast_ref::<reqwest::Error>() {
        return Some(recognise_reqwest(error));
    }
    if let Some(error) = error.downcast_ref::<reqwest_middleware::Error>() {
        // Both variants are `#[error(transparent)]`: `source()` would skip the error they hold.
        return match error {
            reqwest_middleware::Error::Reqwest(error) => Some(recognise_reqwest(error)),
            reqwest_middleware::Error::Middleware(error) => recognise(error.as_ref()),
        };
    }
    if let Some(error) = error.downcast_ref::<io::Error>() {
        return recognise_io(error);
    }
    None
}

fn recognise_reqwest(error: &reqwest::Error) -> (Retryable, RetryReason) {
    if is_certificate_error(error) {
        (Retryable::Fatal, RetryReason::Other)
    } else if error.is_connect() {
        // Before the timeout: a connect timeout is a connect error too, and nothing was sent.
        (Retryable::Transient, RetryReason::Connect)
    } else if error.is_timeout() {
        (Retryable::Transient, RetryReason::Timeout)
    } else if error.is_body() || error.is_decode() || error.is_builder() || error.is_redirect() {
        (Retryable::Fatal, RetryReason::Other)
    } else if error.is_request() {
        (Retryable::Transient, RetryReason::Network)
    } else {
        (Retryable::Fatal, RetryReason::Other)
    }
}

fn recognise_io(error: &io::Error) -> Option<(Retryable, RetryReason)> {
    use io::ErrorKind::*;
    if is_certificate_error(error) {
        return Some((Retryable::Fatal, RetryReason::Other));
    }
    let reason = match error.kind() {
        ConnectionRefused => RetryReason::Connect,
        TimedOut => RetryReason::Timeout,
        ConnectionReset | ConnectionAborted | NotConnected | BrokenPipe | UnexpectedEof => {
            RetryReason::Network
        }
        // Maybe a wrapper: let the search go on down the chain.
        _ => return None,
    };
    Some((Retryable::Transient, reason))
}

/// The default rule for token errors: whether the retry layer tries the request again.
///
/// IAM has one retry schedule, the token manager's: a fetch that ended in
/// [`TokenError::Unavailable`], [`Network`](TokenError::Network) or
/// [`Timeout`](TokenError::Timeout) has already made its
/// [`fetch_attempts`](evolution_token::TokenManagerBuilder::fetch_attempts) IAM requests, with
/// backoff. A retry here would start another refresh and multiply IAM's load by the attempt
/// count while IAM is down, so these are [`Fatal`](Retryable::Fatal) for this layer — although
/// the error still says it is transient ([`TokenError::is_transient`]): a caller may try again
/// later. Wrong or forbidden credentials, a wrong auth URL and unusable IAM answers are fatal
/// anyway. Two are [`Transient`](Retryable::Transient): [`TokenError::Aborted`] (the refresh
/// ended without an IAM answer: the next attempt starts a new one) and
/// [`TokenError::Deadline`] (the attempt's time ran out while its refresh was still running:
/// the next attempt joins that same refresh, so IAM sees no extra request).
///
/// ```
/// use std::sync::Arc;
/// use evolution_retry::{Retryable, classify_token};
/// use evolution_token::{TokenError, TokenErrorKind};
/// use http::StatusCode;
///
/// let down = TokenError::Unavailable {
///     status: StatusCode::SERVICE_UNAVAILABLE,
///     attempts: 3,
///     auth_url: Arc::from("https://iam.api.cloud.ru/api/v1/auth/token"),
/// };
/// assert!(down.is_transient());
/// assert_eq!(classify_token(&down), Retryable::Fatal);
/// let aborted = TokenError::Aborted { reason: evolution_token::AbortReason::RuntimeShutdown };
/// assert_eq!(classify_token(&aborted), Retryable::Transient);
/// ```
pub fn classify_token(error: &TokenError) -> Retryable {
    match error.kind() {
        TokenErrorKind::Aborted | TokenErrorKind::Deadline => Retryable::Transient,
        _ => Retryable::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_deep_in_a_chain_are_found() {
        #[derive(Debug, thiserror::Error)]
        #[error("wrapper")]
        struct Wrapper(#[source] io::Error);

        let error = Wrapper(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(classify_error(&error), Retryable::Transient);
        assert_eq!(error_reason(&error), RetryReason::Network);
    }

    #[test]
    fn a_certificate_error_in_an_io_error_is_fatal_whatever_its_kind() {
        // hyper-based transports wrap the TLS error in io errors, one of them
        // `ConnectionReset`-like at times: the certificate decides.
        let tls = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
        );
        let error = io::Error::new(io::ErrorKind::ConnectionAborted, tls);
        assert_eq!(classify_error(&error), Retryable::Fatal);
    }

    #[test]
    fn other_io_errors_are_fatal() {
        let error = io::Error::from(io::ErrorKind::PermissionDenied);
        assert_eq!(classify_error(&error), Retryable::Fatal);
        assert_eq!(error_reason(&error), RetryReason::Other);
    }
}
