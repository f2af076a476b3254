//! Observing retries: [`RetryEvent`], [`RetryReason`] and the [`RetryObserver`] hook.
//!
//! Every retry is also a `tracing` event (target `evolution_retry`, level INFO) with the
//! fields `attempt`, `reason` and `delay`. Giving up is a DEBUG event saying why (attempts
//! used up, budget exhausted, deadline too close, a fatal failure); the caller gets the last
//! answer, so it is not logged louder than that here.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use evolution_token::TokenErrorKind;
use http::StatusCode;

/// Why an attempt is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryReason {
    /// The server answered this status (408, 429, 5xx by default).
    Status(StatusCode),
    /// The attempt timed out: the per-attempt `tower::timeout`, or the HTTP client's own
    /// timeout. The request may have reached the server, which may still be working on it:
    /// resent only with [`retry_on_timeout`](crate::RetryConfigBuilder::retry_on_timeout).
    Timeout,
    /// The connection could not be made (refused, DNS, TLS handshake, connect timeout): the
    /// request was not sent, so it is always safe to send.
    Connect,
    /// The connection failed while the request was being sent or the answer awaited: it may
    /// have reached the server. Resent only with
    /// [`retry_ambiguous`](crate::RetryConfigBuilder::retry_ambiguous).
    Network,
    /// No token could be obtained, and the token manager had not retried it
    /// ([`classify_token`](crate::classify_token)).
    Token(TokenErrorKind),
    /// An error a custom [`Classify`](crate::Classify) called transient but this crate does
    /// not recognise.
    Other,
}

impl RetryReason {
    /// A short, stable value for the `reason` label of `evolution_retries_total`: the status
    /// code (`"503"`), `"timeout"`, `"connect"`, `"network"`, `"token"` or `"other"`.
    ///
    /// ```
    /// use evolution_retry::RetryReason;
    /// use http::StatusCode;
    ///
    /// assert_eq!(RetryReason::Status(StatusCode::TOO_MANY_REQUESTS).label(), "429");
    /// assert_eq!(RetryReason::Timeout.label(), "timeout");
    /// ```
    pub fn label(&self) -> Cow<'static, str> {
        match self {
            Self::Status(status) => match status.as_u16() {
                408 => Cow::Borrowed("408"),
                429 => Cow::Borrowed("429"),
                500 => Cow::Borrowed("500"),
                502 => Cow::Borrowed("502"),
                503 => Cow::Borrowed("503"),
                504 => Cow::Borrowed("504"),
                other => Cow::Owned(other.to_string()),
            },
            Self::Timeout => Cow::Borrowed("timeout"),
            Self::Connect => Cow::Borrowed("connect"),
            Self::Network => Cow::Borrowed("network"),
            Self::Token(_) => Cow::Borrowed("token"),
            Self::Other => Cow::Borrowed("other"),
        }
    }
}

impl fmt::Display for RetryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(status) => write!(f, "status {}", status.as_u16()),
            Self::Token(kind) => write!(f, "token {}", kind.as_str()),
            other => f.write_str(&other.label()),
        }
    }
}

/// One retry about to happen: sent to every [`RetryObserver`] before the wait starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryEvent {
    /// The number of the attempt that will be made after the wait: 2 for the first retry.
    pub attempt: u32,
    /// Why the previous attempt is retried.
    pub reason: RetryReason,
    /// How long the policy waits before that attempt.
    pub delay: Duration,
}

/// Told about every retry, for metrics (`evolution_retries_total{reason}`) or tests.
///
/// Called synchronously on the request's task: keep it short (count, record, send).
/// Any `Fn(&RetryEvent) + Send + Sync + 'static` is an observer.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use evolution_retry::{RetryConfig, RetryEvent};
///
/// let retries = Arc::new(AtomicU64::new(0));
/// let counter = retries.clone();
/// let config = RetryConfig::builder()
///     .observer(move |_: &RetryEvent| {
///         counter.fetch_add(1, Ordering::Relaxed);
///     })
///     .build()?;
/// # drop(config);
/// # Ok::<(), evolution_retry::ConfigError>(())
/// ```
pub trait RetryObserver: Send + Sync + 'static {
    /// A retry was decided; the wait starts after this returns.
    fn on_retry(&self, event: &RetryEvent);
}

impl<F> RetryObserver for F
where
    F: Fn(&RetryEvent) + Send + Sync + 'static,
{
    fn on_retry(&self, event: &RetryEvent) {
        self(event)
    }
}
