//! IAM's `Retry-After`: how long it asks a client to wait before the next token request.
//!
//! evolution-retry has the full parser for the API's answers, but this crate sits below it
//! (retry depends on token), so the two forms HTTP defines are read here directly.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::RETRY_AFTER;

/// The wait `headers` ask for: delay-seconds, or an HTTP-date read against the wall clock
/// (a date in the past is no wait). `None` when absent or unreadable.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is a wait longer than anyone honours: saturate.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(wall_clock()).unwrap_or(Duration::ZERO))
}

/// An HTTP-date names a wall-clock instant; tokio's clock cannot say when that is.
#[allow(clippy::disallowed_methods)]
fn wall_clock() -> SystemTime {
    SystemTime::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, value.parse().unwrap());
        retry_after(&headers)
    }

    #[test]
    fn reads_seconds_and_dates() {
        assert_eq!(parse("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(parse("Sun, 06 Nov 1994 08:49:47 GMT"), Some(Duration::ZERO));
        let ahead = httpdate::fmt_http_date(wall_clock() + Duration::from_secs(60));
        let wait = parse(&ahead).unwrap();
        assert!(
            (Duration::from_secs(58)..=Duration::from_secs(60)).contains(&wait),
            "{wait:?}"
        );
    }

    #[test]
    fn ignores_what_does_not_parse() {
        for value in ["", "soon", "-1", "1.5", "+3"] {
            assert_eq!(parse(value), None, "{value:?}");
        }
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }
}
