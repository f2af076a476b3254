//! The server's own wait: `Retry-After` (seconds or an HTTP-date) and `retry-after-ms`.
//!
//! An HTTP-date is compared with the wall clock, which the policy reads only through an
//! injectable [`Clock`], so tests can fix "now". Everything else in this crate measures time
//! on tokio's monotonic clock, which `tokio::time::pause()` controls.

use std::fmt;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::{HeaderName, RETRY_AFTER};

/// The `retry-after-ms` header: a delay in milliseconds (sent by OpenAI-compatible servers).
pub const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");

/// The wall clock, for `Retry-After` HTTP-dates. Any `Fn() -> SystemTime + Send + Sync` is one.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use evolution_retry::RetryConfig;
///
/// let fixed = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// let config = RetryConfig::builder().clock(move || fixed).build()?;
/// # drop(config);
/// # Ok::<(), evolution_retry::ConfigError>(())
/// ```
pub trait Clock: Send + Sync + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock, [`SystemTime::now`]. The default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    // The one wall-clock read of this crate: everything else gets the time from a `Clock`.
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

impl<F> Clock for F
where
    F: Fn() -> SystemTime + Send + Sync + 'static,
{
    fn now(&self) -> SystemTime {
        self()
    }
}

impl fmt::Debug for dyn Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

/// What the policy does when the server asks for a longer wait than
/// [`max_retry_after`](crate::RetryConfigBuilder::max_retry_after).
///
/// The default, [`Fail`](Self::Fail), because a retry before the server's time is most likely
/// refused again (another 429 that also counts against the rate limit), and a caller blocked
/// for a wait it cannot see is worse off than one told how long to wait. openai-python does
/// the same (`_should_retry`: no retry when `Retry-After` exceeds its two-minute maximum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum LongRetryAfter {
    /// Do not retry: hand the answer back at once, with a [`RetryAfterTooLong`] in its
    /// extensions saying how long the server asked for. The default.
    #[default]
    Fail,
    /// Wait `max_retry_after` and retry anyway, earlier than the server asked.
    RetryEarly,
}

/// Put by [`RetryPolicy`](crate::RetryPolicy) into the extensions of an answer it did not
/// retry because the server asked for a longer wait than
/// [`max_retry_after`](crate::RetryConfigBuilder::max_retry_after) (with
/// [`LongRetryAfter::Fail`]), so that the caller can say how long to wait.
///
/// ```
/// use std::time::Duration;
/// use evolution_retry::RetryAfterTooLong;
///
/// # let response = http::Response::new(());
/// if let Some(too_long) = response.extensions().get::<RetryAfterTooLong>() {
///     println!("come back in {:?}", too_long.retry_after());
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfterTooLong {
    pub(crate) retry_after: Duration,
    pub(crate) max_retry_after: Duration,
}

impl RetryAfterTooLong {
    /// The mark for an answer asking for `retry_after` when at most `max_retry_after` was
    /// allowed (for a policy of your own that gives up the same way).
    pub fn new(retry_after: Duration, max_retry_after: Duration) -> Self {
        Self {
            retry_after,
            max_retry_after,
        }
    }

    /// How long the server asked to wait (`Retry-After` or `retry-after-ms`).
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The longest wait the policy was allowed to make.
    pub fn max_retry_after(&self) -> Duration {
        self.max_retry_after
    }
}

/// How long the server asks the client to wait, from `headers` read at wall-clock time `now`.
///
/// `retry-after-ms` wins over `Retry-After` when both parse, being the more precise. A date in
/// the past means no wait (`Some(Duration::ZERO)`). Headers that do not parse are ignored.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use evolution_retry::retry_after;
/// use http::HeaderMap;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("retry-after", "2".parse()?);
/// assert_eq!(retry_after(&headers, SystemTime::now()), Some(Duration::from_secs(2)));
/// headers.insert("retry-after-ms", "150".parse()?);
/// assert_eq!(retry_after(&headers, SystemTime::now()), Some(Duration::from_millis(150)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name| headers.get(name).and_then(|value| value.to_str().ok());
    text(&RETRY_AFTER_MS)
        .and_then(parse_retry_after_ms)
        .or_else(|| text(&RETRY_AFTER).and_then(|value| parse_retry_after(value, now)))
}

/// Parses a `Retry-After` value: delay-seconds, or an HTTP-date (IMF-fixdate, RFC 850 or
/// asctime) turned into a delay from `now`.
///
/// Seconds may carry a fraction (`"1.5"`), as some servers send; signs, exponents and
/// non-numbers are refused. A value too large for a [`Duration`] saturates (beyond any
/// `max_retry_after`).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use evolution_retry::parse_retry_after;
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
/// assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
/// assert_eq!(
///     parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now), // now + 10 s
///     Some(Duration::from_secs(10)),
/// );
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Some(seconds) = parse_decimal(value) {
        return Some(saturating_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses a `retry-after-ms` value: milliseconds, possibly with a fraction.
///
/// ```
/// use std::time::Duration;
/// use evolution_retry::parse_retry_after_ms;
///
/// assert_eq!(parse_retry_after_ms("250"), Some(Duration::from_millis(250)));
/// assert_eq!(parse_retry_after_ms("-1"), None);
/// ```
pub fn parse_retry_after_ms(value: &str) -> Option<Duration> {
    parse_decimal(value.trim()).map(|millis| saturating_secs(millis / 1000.0))
}

/// `digits` or `digits.digits`, nothing else (no sign, exponent, `inf` or `NaN`).
fn parse_decimal(value: &str) -> Option<f64> {
    let (whole, fraction) = match value.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (value, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|fraction| !digits(fraction)) {
        return None;
    }
    value.parse().ok()
}

fn saturating_secs(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_f64_parse_would_accept() {
        for value in [
            "", ".", "1.", ".5", "+1", "-1", "1e3", "inf", "NaN", "0x10", "1 2",
        ] {
            assert_eq!(parse_retry_after_ms(value), None, "{value:?}");
        }
    }

    #[test]
    fn past_dates_mean_no_wait() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn huge_values_saturate() {
        assert_eq!(
            parse_retry_after("99999999999999999999999", SystemTime::UNIX_EPOCH),
            Some(Duration::MAX)
        );
    }
}
