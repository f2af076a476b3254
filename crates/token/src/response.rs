//! Parsing the IAM answer.
//!
//! Public so that custom fetchers and fuzz targets use exactly the rules the
//! manager uses.

use secrecy::SecretString;
use serde_json::Value;
use tokio::time::Duration;

use crate::InvalidResponseReason;

/// `expires_in` when IAM does not send one (the reference SDK's default).
pub const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(3600);

/// The longest lifetime believed from IAM; larger `expires_in` values are clamped to it,
/// so a bogus answer cannot keep a token cached for years.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A successful IAM answer: the token and its lifetime.
pub struct TokenGrant {
    /// The access token.
    pub access_token: SecretString,
    /// Its lifetime, defaulted and clamped to `1 ms ..= MAX_TOKEN_LIFETIME`.
    pub expires_in: Duration,
}

impl std::fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGrant")
            .field("access_token", &"[REDACTED]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Parses the body of a 200 answer from IAM.
///
/// Rules: `access_token` must be a non-empty string usable in a header;
/// `expires_in` missing or `null` means [`DEFAULT_EXPIRES_IN`]; a number (integer or
/// fractional, in seconds) must be positive and is clamped to [`MAX_TOKEN_LIFETIME`];
/// anything else is an error. Other fields are ignored.
///
/// ```
/// use evolution_token::{parse_token_response, InvalidResponseReason};
/// use std::time::Duration;
///
/// let grant = parse_token_response(br#"{"access_token":"abc","expires_in":600}"#).unwrap();
/// assert_eq!(grant.expires_in, Duration::from_secs(600));
///
/// let err = parse_token_response(br#"{"expires_in":600}"#).unwrap_err();
/// assert_eq!(err, InvalidResponseReason::MissingAccessToken);
/// ```
pub fn parse_token_response(body: &[u8]) -> Result<TokenGrant, InvalidResponseReason> {
    let value: Value = serde_json::from_slice(body).map_err(|_| InvalidResponseReason::NotJson)?;
    let Value::Object(mut object) = value else {
        return Err(InvalidResponseReason::NotAnObject);
    };
    let expires_in = match object.get("expires_in") {
        None | Some(Value::Null) => DEFAULT_EXPIRES_IN,
        Some(Value::Number(n)) => seconds(n.as_f64())?,
        Some(_) => return Err(InvalidResponseReason::ExpiresInNotANumber),
    };
    let access_token = match object.remove("access_token") {
        Some(Value::String(token)) => token,
        _ => return Err(InvalidResponseReason::MissingAccessToken),
    };
    if access_token.is_empty()
        || !access_token
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"')
    {
        return Err(InvalidResponseReason::InvalidAccessToken);
    }
    Ok(TokenGrant {
        access_token: SecretString::from(access_token),
        expires_in,
    })
}

fn seconds(n: Option<f64>) -> Result<Duration, InvalidResponseReason> {
    match n {
        Some(secs) if secs.is_finite() && secs > 0.0 => {
            let max = MAX_TOKEN_LIFETIME.as_secs_f64();
            Ok(Duration::from_secs_f64(secs.min(max)).max(Duration::from_millis(1)))
        }
        Some(secs) if secs.is_finite() => Err(InvalidResponseReason::ExpiresInNotPositive),
        _ => Err(InvalidResponseReason::ExpiresInNotANumber),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(body: &str) -> Result<Duration, InvalidResponseReason> {
        parse_token_response(body.as_bytes()).map(|g| g.expires_in)
    }

    #[test]
    fn expires_in_rules() {
        assert_eq!(parse(r#"{"access_token":"t"}"#), Ok(DEFAULT_EXPIRES_IN));
        assert_eq!(
            parse(r#"{"access_token":"t","expires_in":null}"#),
            Ok(DEFAULT_EXPIRES_IN)
        );
        assert_eq!(
            parse(r#"{"access_token":"t","expires_in":10}"#),
            Ok(Duration::from_secs(10))
        );
        assert_eq!(
            parse(r#"{"access_token":"t","expires_in":1.5}"#),
            Ok(Duration::from_millis(1500))
        );
        assert_eq!(
            parse(r#"{"access_token":"t","expires_in":1000000000000}"#),
            Ok(MAX_TOKEN_LIFETIME)
        );
        assert_eq!(
            parse(r#"{"access_token":"t","expires_in":1e400}"#),
            Err(InvalidResponseReason::NotJson)
        );
        assert_eq!(
            parse(r#"{"access_token":"t","expires_in":0}"#),
            Err(InvalidResponseReason::ExpiresInNotPositive)
        );
        assert_eq!(
            parse(r#"{"access_token":"t","expires_in":-5}"#),
            Err(InvalidResponseReason::ExpiresInNotPositive)
        );
        assert_eq!(
            parse(r#"{"access_token":"t","expires_in":"3600"}"#),
            Err(InvalidResponseReason::ExpiresInNotANumber)
        );
    }

    #[test]
    fn body_rules() {
        assert_eq!(parse(""), Err(InvalidResponseReason::NotJson));
        assert_eq!(parse("<html>"), Err(InvalidResponseReason::NotJson));
        assert_eq!(parse("[1]"), Err(InvalidResponseReason::NotAnObject));
        assert_eq!(parse("{}"), Err(InvalidResponseReason::MissingAccessToken));
        assert_eq!(
            parse(r#"{"access_token":7}"#),
            Err(InvalidResponseReason::MissingAccessToken)
        );
        assert_eq!(
            parse(r#"{"access_token":""}"#),
            Err(InvalidResponseReason::InvalidAccessToken)
        );
        assert_eq!(
            parse(r#"{"access_token":"a b"}"#),
            Err(InvalidResponseReason::InvalidAccessToken)
        );
        // Extra fields of the real IAM answer are ignored.
        assert!(
            parse(r#"{"access_token":"t","expires_in":3600,"refresh_token":"","id_token":"x","token_type":"Bearer"}"#)
                .is_ok()
        );
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_token_response(&body);
        }

        #[test]
        fn lifetime_is_always_positive_and_clamped(secs in any::<f64>()) {
            let body = format!(r#"{{"access_token":"t","expires_in":{secs}}}"#);
            if let Ok(grant) = parse_token_response(body.as_bytes()) {
                prop_assert!(grant.expires_in > Duration::ZERO);
                prop_assert!(grant.expires_in <= MAX_TOKEN_LIFETIME);
            }
        }
    }
}
