//! Errors a server sends inside a stream, after its `200` head.
//!
//! vLLM-like servers that fail while generating cannot change the status any more: they
//! send the error as an event, `data: {"error": {"message", "type", "code"}}`, and usually
//! `data: [DONE]` after it. The rule follows the openai SDK's (`_streaming.py`), which raises
//! `APIError` for an event whose data is a JSON object with a truthy `error`, and is a little
//! stricter: an event of type `error` (`event: error`) fails the stream whatever its data,
//! where the SDK would read data without an `error` key as a chunk.

use http::StatusCode;
use serde_json::Value;

use crate::Error;

/// The status of a mid-stream error whose `code` is not an HTTP error status (`"code":
/// "server_error"`, `null`, missing): the server failed after answering `200`, a server
/// error ([`Error::is_retryable`] holds).
pub const STREAM_ERROR_STATUS: StatusCode = StatusCode::INTERNAL_SERVER_ERROR;

/// The message of a mid-stream error that carries none (the openai SDK's words).
const NO_MESSAGE: &str = "an error occurred during streaming";

/// The longest message taken from a server's raw event data, in bytes.
const MAX_RAW_MESSAGE: usize = 512;

/// The error an event carries, if it is one: `event` is its type, `data` its data.
///
/// The status is the error's `code` when that is an HTTP error status (400 to 599, as a
/// number or a string of digits), else [`STREAM_ERROR_STATUS`]; the message is its
/// `message` (or the error itself when it is a string); the code is its `code`.
pub(crate) fn stream_error(event: Option<&str>, data: &str) -> Option<Error> {
    let named = event == Some("error");
    // A chunk never has an `"error"` key or value; a quote inside its text is escaped
    // (`\"error\"`), so this finds every error event without parsing every chunk twice.
    if !named && !data.contains("\"error\"") {
        return None;
    }
    let value: Option<Value> = serde_json::from_str(data).ok();
    let error = value
        .as_ref()
        .and_then(|value| value.get("error"))
        .filter(|error| truthy(error));
    match error {
        Some(error) => Some(from_error_value(error)),
        None if named => Some(api(
            STREAM_ERROR_STATUS,
            value
                .as_ref()
                .and_then(|value| value.get("message"))
                .and_then(Value::as_str)
                .filter(|message| !message.is_empty())
                .map_or_else(|| raw_message(data), str::to_owned),
            None,
        )),
        None => None,
    }
}

/// Python's truth value, as the SDK's `if not error` uses it.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(value) => *value,
        Value::Number(number) => number.as_f64().is_some_and(|n| n != 0.0),
        Value::String(text) => !text.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(fields) => !fields.is_empty(),
    }
}

fn from_error_value(error: &Value) -> Error {
    let message = match error {
        Value::String(message) => Some(message.as_str()),
        _ => error.get("message").and_then(Value::as_str),
    }
    .filter(|message| !message.is_empty())
    .unwrap_or(NO_MESSAGE)
    .to_owned();
    let code = error.get("code");
    let status = code
        .and_then(|code| match code {
            Value::Number(number) => number.as_u64(),
            Value::String(text) => text.parse().ok(),
            _ => None,
        })
        .and_then(|code| u16::try_from(code).ok())
        .filter(|code| (400..=599).contains(code))
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(STREAM_ERROR_STATUS);
    let code = code.and_then(|code| match code {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    });
    api(status, message, code)
}

/// Event data that is not JSON, as a message: trimmed and bounded.
fn raw_message(data: &str) -> String {
    let data = data.trim();
    if data.is_empty() {
        return NO_MESSAGE.to_owned();
    }
    let mut end = data.len().min(MAX_RAW_MESSAGE);
    while !data.is_char_boundary(end) {
        end -= 1;
    }
    data[..end].to_owned()
}

fn api(status: StatusCode, message: String, code: Option<String>) -> Error {
    Error::Api {
        status,
        message,
        code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(event: Option<&str>, data: &str) -> Option<(u16, String, Option<String>)> {
        match stream_error(event, data)? {
            Error::Api {
                status,
                message,
                code,
            } => Some((status.as_u16(), message, code)),
            other => panic!("not an API error: {other:?}"),
        }
    }

    #[test]
    fn the_openai_rule_and_event_error() {
        let some = |status: u16, message: &str, code: Option<&str>| {
            Some((status, message.to_owned(), code.map(str::to_owned)))
        };
        let cases: [(Option<&str>, &str, _); 14] = [
            // vLLM's shape: a numeric code is the status.
            (
                None,
                r#"{"error":{"object":"error","message":"too long","type":"BadRequestError","param":null,"code":400}}"#,
                some(400, "too long", Some("400")),
            ),
            (
                None,
                r#"{"error":{"message":"slow down","code":"429"}}"#,
                some(429, "slow down", Some("429")),
            ),
            // OpenAI's shape: a string code keeps the default status.
            (
                None,
                r#"{"error":{"message":"overloaded","type":"server_error","code":"server_error"}}"#,
                some(500, "overloaded", Some("server_error")),
            ),
            (
                None,
                r#"{"error":{"message":"odd","code":200}}"#,
                some(500, "odd", Some("200")),
            ),
            (None, r#"{"error":"boom"}"#, some(500, "boom", None)),
            (
                None,
                r#"{"error":{"code":null}}"#,
                some(500, NO_MESSAGE, None),
            ),
            (None, r#"{"error":true}"#, some(500, NO_MESSAGE, None)),
            // Falsy errors are not errors (the SDK's `if not error`).
            (None, r#"{"error":null,"choices":[]}"#, None),
            (None, r#"{"error":{},"choices":[]}"#, None),
            (
                None,
                r#"{"choices":[{"delta":{"content":"say \"error\""}}]}"#,
                None,
            ),
            (None, r#"{"choices":[{"finish_reason":"error"}]}"#, None),
            // An `error` event is an error whatever its data.
            (
                Some("error"),
                r#"{"error":{"message":"gone","code":503}}"#,
                some(503, "gone", Some("503")),
            ),
            (
                Some("error"),
                r#"{"message":"flat"}"#,
                some(500, "flat", None),
            ),
            (
                Some("error"),
                "  upstream timed out \n",
                some(500, "upstream timed out", None),
            ),
        ];
        for (event, data, expected) in cases {
            assert_eq!(parts(event, data), expected, "{event:?} {data}");
        }
        assert_eq!(parts(Some("message"), r#"{"choices":[]}"#), None);
        let long = "é".repeat(1000);
        let (_, message, _) = parts(Some("error"), &long).unwrap();
        assert!(message.len() <= MAX_RAW_MESSAGE && long.starts_with(&message));
    }
}
