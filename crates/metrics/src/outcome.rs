//! What became of a logical call: the `outcome` and `status` labels.

use std::error::Error;
use std::io;

use evolution_token::TokenError;
use http::StatusCode;

use crate::names::STATUS_NONE;

/// The result of one logical call, as the `outcome` label of `evolution_requests_total`.
///
/// A small closed set, so that label cardinality stays bounded; the HTTP status, when there
/// is one, goes in the separate `status` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// An answer below 400 (`"ok"`).
    Ok,
    /// A 4xx answer other than 401 and 403, or a 3xx: the stack follows no redirect, so a
    /// redirect fails the call (its target is a base URL to fix) (`"client_error"`).
    ClientError,
    /// A 401 or 403 answer, or a [`TokenError`] for which [`TokenError::is_auth`] holds: the
    /// key was rejected (`"auth_error"`).
    AuthError,
    /// An answer of 500 or above (`"server_error"`).
    ServerError,
    /// No answer in time: a `tower` or `tokio` timeout, a `reqwest` timeout, or an I/O
    /// `TimedOut` error (`"timeout"`).
    Timeout,
    /// No answer: any other `reqwest` or I/O error (`"transport_error"`).
    TransportError,
    /// No token could be obtained, for a reason other than a rejected key: IAM unavailable,
    /// unreachable, or answering nonsense (`"token_error"`).
    TokenError,
    /// Any other error (`"error"`).
    Error,
    /// The caller dropped the call before it finished (`"cancelled"`).
    Cancelled,
    /// A success head whose body was then cut, malformed, or carried an error, such as a
    /// completion stream that failed midway (`"body_error"`). Only recorded for a call whose
    /// caller read the body and said so: see [`PendingCall`](crate::PendingCall).
    BodyError,
}

impl Outcome {
    /// Every outcome, in [`index`](Self::index) order.
    pub(crate) const ALL: [Self; 10] = [
        Self::Ok,
        Self::ClientError,
        Self::AuthError,
        Self::ServerError,
        Self::Timeout,
        Self::TransportError,
        Self::TokenError,
        Self::Error,
        Self::Cancelled,
        Self::BodyError,
    ];

    /// The position of this outcome in [`ALL`](Self::ALL).
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The label value: a short snake_case name, stable.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ClientError => "client_error",
            Self::AuthError => "auth_error",
            Self::ServerError => "server_error",
            Self::Timeout => "timeout",
            Self::TransportError => "transport_error",
            Self::TokenError => "token_error",
            Self::Error => "error",
            Self::Cancelled => "cancelled",
            Self::BodyError => "body_error",
        }
    }

    /// Whether the call succeeded (counted in [`Stats::successes`](crate::Stats::successes)).
    pub fn is_success(self) -> bool {
        self == Self::Ok
    }

    /// Whether the call failed on authentication (counted in `evolution_auth_errors_total`).
    pub fn is_auth(self) -> bool {
        self == Self::AuthError
    }

    /// The outcome of a call answered with `status`.
    ///
    /// ```
    /// use evolution_metrics::Outcome;
    /// use http::StatusCode;
    ///
    /// assert_eq!(Outcome::from_status(StatusCode::OK), Outcome::Ok);
    /// assert_eq!(Outcome::from_status(StatusCode::FORBIDDEN), Outcome::AuthError);
    /// assert_eq!(Outcome::from_status(StatusCode::TOO_MANY_REQUESTS), Outcome::ClientError);
    /// ```
    pub fn from_status(status: StatusCode) -> Self {
        match status.as_u16() {
            401 | 403 => Self::AuthError,
            300..=499 => Self::ClientError,
            500.. => Self::ServerError,
            _ => Self::Ok,
        }
    }

    /// The outcome of a call that failed with `error`.
    ///
    /// The error and its [`source`](Error::source) chain are inspected by type (never by
    /// message); the first recognised type decides. Unrecognised errors are [`Outcome::Error`].
    ///
    /// ```
    /// use evolution_metrics::Outcome;
    ///
    /// let timeout = tower::timeout::error::Elapsed::new();
    /// assert_eq!(Outcome::from_error(&timeout), Outcome::Timeout);
    /// ```
    pub fn from_error(error: &(dyn Error + 'static)) -> Self {
        // A bound, in case of a cyclic or absurdly deep chain.
        const MAX_DEPTH: usize = 16;
        let mut current = Some(error);
        for _ in 0..MAX_DEPTH {
            let Some(error) = current else { break };
            if let Some(outcome) = classify_one(error) {
                return outcome;
            }
            current = error.source();
        }
        Self::Error
    }
}

fn classify_one(error: &(dyn Error + 'static)) -> Option<Outcome> {
    if let Some(error) = error.downcast_ref::<TokenError>() {
        return Some(if error.is_auth() {
            Outcome::AuthError
        } else {
            Outcome::TokenError
        });
    }
    if error.is::<tower::timeout::error::Elapsed>() || error.is::<tokio::time::error::Elapsed>() {
        return Some(Outcome::Timeout);
    }
    if let Some(error) = error.downcast_ref::<reqwest::Error>() {
        return Some(if error.is_timeout() {
            Outcome::Timeout
        } else {
            Outcome::TransportError
        });
    }
    if let Some(error) = error.downcast_ref::<io::Error>() {
        return Some(if error.kind() == io::ErrorKind::TimedOut {
            Outcome::Timeout
        } else {
            Outcome::TransportError
        });
    }
    None
}

/// Every status code `100..=999` as three ASCII digits, so that a `status` label is a
/// `&'static str` and costs no allocation per call.
const STATUS_DIGITS: [u8; 2700] = {
    let mut digits = [0; 2700];
    let mut code = 100;
    while code < 1000 {
        let at = (code - 100) * 3;
        digits[at] = b'0' + (code / 100) as u8;
        digits[at + 1] = b'0' + (code / 10 % 10) as u8;
        digits[at + 2] = b'0' + (code % 10) as u8;
        code += 1;
    }
    digits
};

static STATUS_TEXT: &str = match std::str::from_utf8(&STATUS_DIGITS) {
    Ok(text) => text,
    Err(_) => panic!("status digits are ASCII"),
};

/// The `status` label value: the numeric code, or [`STATUS_NONE`] without an answer.
pub(crate) fn status_label(status: Option<StatusCode>) -> &'static str {
    match status {
        // `StatusCode` guarantees 100..=999.
        Some(status) => {
            let at = usize::from(status.as_u16() - 100) * 3;
            &STATUS_TEXT[at..at + 3]
        }
        None => STATUS_NONE,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn status_labels_are_the_numeric_codes() {
        for code in 100..=999 {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(status_label(Some(status)), status.as_str());
        }
        assert_eq!(status_label(None), "none");
    }

    #[test]
    fn all_is_in_index_order() {
        for (i, outcome) in Outcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome.index(), i);
        }
    }

    #[test]
    fn statuses_map_to_outcomes() {
        let cases = [
            (200, Outcome::Ok),
            (204, Outcome::Ok),
            (304, Outcome::ClientError),
            (308, Outcome::ClientError),
            (400, Outcome::ClientError),
            (401, Outcome::AuthError),
            (403, Outcome::AuthError),
            (404, Outcome::ClientError),
            (429, Outcome::ClientError),
            (500, Outcome::ServerError),
            (503, Outcome::ServerError),
        ];
        for (code, outcome) in cases {
            assert_eq!(
                Outcome::from_status(StatusCode::from_u16(code).unwrap()),
                outcome
            );
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("wrapped")]
    struct Wrapper(#[source] Box<dyn Error + Send + Sync>);

    #[test]
    fn errors_map_to_outcomes_through_the_source_chain() {
        let rejected = TokenError::InvalidCredentials {
            key_id: Arc::from("key"),
        };
        assert_eq!(Outcome::from_error(&rejected), Outcome::AuthError);
        let unavailable = TokenError::Unavailable {
            status: StatusCode::SERVICE_UNAVAILABLE,
            attempts: 3,
            auth_url: Arc::from("http://iam"),
        };
        assert_eq!(Outcome::from_error(&unavailable), Outcome::TokenError);
        let wrapped = Wrapper(Box::new(rejected));
        assert_eq!(Outcome::from_error(&wrapped), Outcome::AuthError);
        let timed_out = io::Error::new(io::ErrorKind::TimedOut, "slow");
        assert_eq!(Outcome::from_error(&timed_out), Outcome::Timeout);
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "no");
        assert_eq!(
            Outcome::from_error(&Wrapper(Box::new(refused))),
            Outcome::TransportError
        );
        assert_eq!(
            Outcome::from_error(&tower::timeout::error::Elapsed::new()),
            Outcome::Timeout
        );
        let other: Box<dyn Error + Send + Sync> = "something else".into();
        assert_eq!(Outcome::from_error(&*other), Outcome::Error);
    }
}
