//! The request body: read once, within the limit, checked as a JSON object, forwarded as is.
//!
//! The bytes go upstream untouched (unknown fields, tools, `response_format`, the client's
//! own formatting), except for a `model` filled in when the request names none: parsing to
//! a value and serializing again would cost time and could change numbers and key order.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http_body_util::LengthLimitError;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::error::ApiError;

/// Reads at most `limit` bytes: more is a 413, and a `Content-Length` over the limit is
/// refused before any byte is read.
pub(crate) async fn read(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes),
        Err(error) if over_limit(&error) => Err(ApiError::too_large(limit)),
        Err(error) => Err(ApiError::new(
            http::StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_body",
            format!("the request body could not be read: {error}"),
        )),
    }
}

/// Whether `to_bytes` stopped at the limit (its error wraps `Limited`'s).
fn over_limit(error: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = cause {
        if error.is::<LengthLimitError>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// Checks that `body` is one JSON object and, when it names no `model` and `default_model`
/// is set, puts that model in. Everything else is left byte for byte.
pub(crate) fn prepare(body: Bytes, default_model: Option<&str>) -> Result<Bytes, ApiError> {
    /// Only `model` is looked at; every other field is skipped (but still checked as JSON).
    #[derive(Deserialize)]
    struct Probe {
        /// Absent: `None`; `null`: `Some(false)`; a value: `Some(true)`.
        #[serde(default, deserialize_with = "present")]
        model: Option<bool>,
    }
    let start = body
        .iter()
        .position(|byte| !byte.is_ascii_whitespace())
        .ok_or_else(|| ApiError::invalid_json("it is empty"))?;
    if body[start] != b'{' {
        // A derived `Deserialize` would take an array for a struct; the API takes objects.
        return Err(ApiError::invalid_json("expected an object, `{...}`"));
    }
    let probe: Probe = serde_json::from_slice(&body).map_err(ApiError::invalid_json)?;
    match (probe.model, default_model) {
        (None, Some(model)) => Ok(with_model(&body, start, model)),
        // Rare: rebuilt, as a second `model` member would be a duplicate key.
        (Some(false), Some(model)) => {
            let mut object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&body).map_err(ApiError::invalid_json)?;
            object.insert("model".to_owned(), model.into());
            Ok(Bytes::from(serde_json::to_vec(&object).unwrap_or_default()))
        }
        _ => Ok(body),
    }
}

/// Called only for a member that is there: whether it is something other than `null`.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    let value: Option<IgnoredAny> = Option::deserialize(deserializer)?;
    Ok(Some(value.is_some()))
}

/// `body` with `"model": model` as the object's first member.
fn with_model(body: &[u8], open_brace: usize, model: &str) -> Bytes {
    let model = serde_json::to_string(model).unwrap_or_default();
    let rest = &body[open_brace + 1..];
    let empty = rest
        .iter()
        .all(|byte| byte.is_ascii_whitespace() || *byte == b'}');
    let mut out = BytesMut::with_capacity(body.len() + model.len() + 12);
    out.extend_from_slice(&body[..=open_brace]);
    out.extend_from_slice(b"\"model\":");
    out.extend_from_slice(model.as_bytes());
    if !empty {
        out.extend_from_slice(b",");
    }
    out.extend_from_slice(rest);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn prepared(body: &str, model: Option<&str>) -> Result<Value, ApiError> {
        let out = prepare(Bytes::copy_from_slice(body.as_bytes()), model)?;
        Ok(serde_json::from_slice(&out).expect("still JSON"))
    }

    #[test]
    fn a_body_with_a_model_is_forwarded_byte_for_byte() {
        let body = Bytes::from_static(br#"{ "model" : "m", "x": 1.000, "tools": [] }"#);
        assert_eq!(prepare(body.clone(), Some("other")).unwrap(), body);
    }

    #[test]
    fn a_missing_or_null_model_is_filled_in() {
        assert_eq!(
            prepared(r#"{"messages":[]}"#, Some("d")).unwrap(),
            json!({"model": "d", "messages": []})
        );
        assert_eq!(
            prepared(r#" { } "#, Some("d")).unwrap(),
            json!({"model": "d"})
        );
        // A null is no model: replaced, not followed by a duplicate key.
        let out = prepare(Bytes::from_static(br#"{"model":null,"n":1}"#), Some("d")).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            json!({"model": "d", "n": 1})
        );
        assert_eq!(out.windows(7).filter(|w| *w == b"\"model\"").count(), 1);
    }

    #[test]
    fn no_default_model_leaves_the_body_alone() {
        assert_eq!(prepared(r#"{"a":1}"#, None).unwrap(), json!({"a": 1}));
    }

    #[test]
    fn malformed_or_non_object_bodies_are_400_invalid_json() {
        for body in [
            "", "   ", "{", "[1]", "\"text\"", "{} {}", "{\"a\":}", "null",
        ] {
            let error = prepared(body, Some("d")).unwrap_err();
            assert_eq!(error.status, http::StatusCode::BAD_REQUEST, "{body:?}");
            assert_eq!(error.code, "invalid_json", "{body:?}");
        }
    }
}
