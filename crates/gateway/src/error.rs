//! Errors as OpenAI's SDKs expect them: `{"error": {"message", "type", "code"}}`.
//!
//! Every answer the gateway makes itself goes through [`ApiError`], so that clients in any
//! language see one shape, and so that no message can carry a key, a secret or a token: the
//! messages are ours, or the client's [`Error`](evolution_client::Error) display, which never
//! holds one either.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};
use serde::Serialize;

/// An error answered by the gateway, in OpenAI's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `api_error`, ...
    pub kind: &'static str,
    /// A machine-readable `code`: `invalid_json`, `invalid_api_key`, `overloaded`, ...
    pub code: &'static str,
    /// What happened and what to check.
    pub message: String,
    /// A `Retry-After` to send with it, in whole seconds.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// An error with no `Retry-After`.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error, telling the client when to come back (rounded up to whole seconds,
    /// at least 1: `Retry-After: 0` would invite an immediate retry).
    #[must_use]
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// 400: the body is not a JSON object.
    pub(crate) fn invalid_json(problem: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_json",
            format!("the request body is not a valid JSON object: {problem}"),
        )
    }

    /// 401: no key, or not one of the gateway's keys.
    pub(crate) fn invalid_api_key(present: bool) -> Self {
        let message = if present {
            "the API key is not one of this gateway's keys: check the key your client sends"
        } else {
            "no API key: send `Authorization: Bearer <gateway key>` (the `api_key` of OpenAI's SDKs)"
        };
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            message,
        )
    }

    /// 404: no such route.
    pub(crate) fn unknown_route(method: &http::Method, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_route",
            format!(
                "no route {method} {path}: this gateway serves POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models, GET /healthz, GET /readyz and GET /metrics"
            ),
        )
    }

    /// 405: the route exists, with another method.
    pub(crate) fn method_not_allowed(method: &http::Method, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            format!("{path} does not take {method}"),
        )
    }

    /// 413: the body is over the limit.
    pub(crate) fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            format!(
                "the request body is over this gateway's limit of {limit} bytes (--max-body-bytes)"
            ),
        )
    }

    /// 503: too many requests in flight.
    pub(crate) fn overloaded(limit: usize) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "overloaded",
            format!(
                "the gateway is at its limit of {limit} requests in flight (--max-in-flight): retry shortly"
            ),
        )
        .retry_after(Duration::from_secs(1))
    }

    /// 502: the upstream failed (unreachable, or a server error after the retries).
    pub(crate) fn upstream(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "api_error",
            "upstream_error",
            message,
        )
    }

    /// 503: the upstream cannot serve now (IAM down, the API unavailable).
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "upstream_unavailable",
            message,
        )
    }

    /// 504: no answer from upstream in time.
    pub(crate) fn timeout(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "api_error",
            "upstream_timeout",
            message,
        )
    }

    /// The JSON body.
    pub fn body(&self) -> Bytes {
        #[derive(Serialize)]
        struct Envelope<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            message: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            code: &'a str,
            param: Option<()>,
        }
        let envelope = Envelope {
            error: Inner {
                message: &self.message,
                kind: self.kind,
                code: self.code,
                param: None,
            },
        };
        // Serializing strings into a Vec cannot fail.
        Bytes::from(serde_json::to_vec(&envelope).unwrap_or_default())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body()).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(wait) = self.retry_after {
            headers.insert(RETRY_AFTER, retry_after_value(wait));
        }
        response
    }
}

/// Whole seconds, rounded up, at least 1.
pub(crate) fn retry_after_value(wait: Duration) -> HeaderValue {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    HeaderValue::from(secs.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_openais_shape() {
        let body = ApiError::too_large(10).body();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["error"]["type"], "invalid_request_error");
        assert_eq!(value["error"]["code"], "request_too_large");
        assert!(
            value["error"]["message"]
                .as_str()
                .unwrap()
                .contains("10 bytes")
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_never_says_zero() {
        assert_eq!(retry_after_value(Duration::ZERO), "1");
        assert_eq!(retry_after_value(Duration::from_millis(1500)), "2");
        assert_eq!(retry_after_value(Duration::from_secs(30)), "30");
    }
}
