//! OpenAI-style JSON error answers: `{"error": {"message", "type", "param", "code"}}`.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{StatusCode, header};
use serde::Serialize;

#[derive(Serialize)]
struct Envelope<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

/// An error body in the OpenAI schema (also used for IAM answers).
pub(crate) fn body(message: &str, kind: &str, code: Option<&str>) -> Bytes {
    let envelope = Envelope {
        error: Detail {
            message,
            kind,
            param: None,
            code,
        },
    };
    serde_json::to_vec(&envelope)
        .map(Bytes::from)
        .unwrap_or_else(|_| Bytes::from_static(b"{\"error\":{\"message\":\"internal error\"}}"))
}

/// The error `type` conventionally used with a status.
pub(crate) fn kind_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

pub(crate) fn json(status: StatusCode, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// An error answer with the conventional `type` for its status.
pub(crate) fn respond(status: StatusCode, message: &str, code: Option<&str>) -> Response {
    json(status, body(message, kind_for(status), code))
}

/// Fallback for unknown paths.
pub(crate) async fn not_found() -> Response {
    respond(StatusCode::NOT_FOUND, "unknown route", Some("not_found"))
}

/// Fallback for a known path with the wrong method.
pub(crate) async fn method_not_allowed() -> Response {
    respond(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
        Some("method_not_allowed"),
    )
}
