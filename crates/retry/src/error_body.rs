//! The body of an error answer, for classification: [`ErrorBody`], and the one rule that
//! needs it, [`is_quota_exhausted`].
//!
//! A 429 may mean "slow down" or "the quota is used up"; only the body tells them apart. The
//! retry layer sees the response before anyone reads its body, so a transport that wants the
//! difference made buffers the (small) bodies of error statuses, up to
//! [`MAX_ERROR_BODY_BYTES`], answers with a body that replays them, and puts a copy in the
//! response's extensions as an [`ErrorBody`]. `evolution-client`'s `HttpTransport` does.
//! Without one, a quota-exhausted 429 is retried like any 429.

use bytes::Bytes;

/// The most an error answer's body a transport should buffer for [`ErrorBody`]: 64 KiB.
/// Error bodies are a few hundred bytes; a longer one is passed on unread.
pub const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Error codes (`error.code` or `error.type` of an OpenAI-style body) that say the quota or the
/// balance is used up rather than the rate too high.
///
/// `insufficient_quota` is OpenAI's (sent with 429). Cloud.ru does not document how
/// Evolution Foundation Models signals an exhausted quota or balance; the other two are what
/// OpenAI-compatible services are seen to send (`insufficient_balance_error` with 429).
pub const QUOTA_EXHAUSTED_CODES: &[&str] = &[
    "insufficient_quota",
    "insufficient_balance",
    "insufficient_balance_error",
];

/// The buffered body of an error answer, in the response's extensions. Cheap to clone.
///
/// A 429 may mean "slow down" or "the quota is used up"; only the body tells them apart, and
/// the retry layer decides before anyone reads it. So a transport that wants the difference
/// made reads the (small) body of an error status first, up to [`MAX_ERROR_BODY_BYTES`],
/// answers with a body replaying it, and puts a copy here. `evolution-client`'s
/// `HttpTransport` does. Without one, a quota-exhausted 429 is retried like any 429.
///
/// ```
/// use bytes::Bytes;
/// use evolution_retry::ErrorBody;
///
/// let mut response = http::Response::new(());
/// response.extensions_mut().insert(ErrorBody::new(Bytes::from_static(b"{}")));
/// assert_eq!(response.extensions().get::<ErrorBody>().unwrap().bytes(), &b"{}"[..]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody(Bytes);

impl ErrorBody {
    /// The whole body of an error answer.
    pub fn new(body: Bytes) -> Self {
        Self(body)
    }

    /// The body.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }
}

/// Whether an error answer's body says the quota (or the balance) is exhausted: an
/// OpenAI-style `{"error": {"code": ..., "type": ...}}` whose code or type is one of
/// [`QUOTA_EXHAUSTED_CODES`]. Anything else, JSON or not, is not.
///
/// ```
/// use evolution_retry::is_quota_exhausted;
///
/// assert!(is_quota_exhausted(
///     br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#
/// ));
/// assert!(!is_quota_exhausted(br#"{"error":{"message":"rate limit exceeded","code":"rate_limit_exceeded"}}"#));
/// assert!(!is_quota_exhausted(b"<html>Too Many Requests</html>"));
/// ```
pub fn is_quota_exhausted(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Detail,
    }
    #[derive(serde::Deserialize)]
    struct Detail {
        #[serde(default)]
        code: serde_json::Value,
        #[serde(default, rename = "type")]
        kind: serde_json::Value,
    }
    let Ok(Envelope { error }) = serde_json::from_slice::<Envelope>(body) else {
        return false;
    };
    [error.code.as_str(), error.kind.as_str()]
        .into_iter()
        .flatten()
        .any(|value| QUOTA_EXHAUSTED_CODES.contains(&value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_or_the_type_may_say_it() {
        assert!(is_quota_exhausted(
            br#"{"error":{"code":"insufficient_quota"}}"#
        ));
        assert!(is_quota_exhausted(
            br#"{"error":{"code":null,"type":"insufficient_balance_error","http_code":"429"}}"#
        ));
        assert!(is_quota_exhausted(
            br#"{"error":{"code":429,"type":"insufficient_quota"}}"#
        ));
    }

    #[test]
    fn other_bodies_are_not_quota() {
        for body in [
            &b""[..],
            b"null",
            br#"{"error":"insufficient_quota"}"#,
            br#"{"error":{"message":"insufficient_quota"}}"#,
            br#"{"error":{"code":"rate_limit_exceeded","type":"requests"}}"#,
            br#"{"detail":"insufficient_quota"}"#,
        ] {
            assert!(
                !is_quota_exhausted(body),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
