//! Scripted faults: what the next request to a route gets instead of (or before) a normal answer.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A fault the emulator injects into one request.
///
/// Queue it with [`Emulator::push_fault`](crate::Emulator::push_fault): the next request to that
/// route consumes it. Every fault can carry extra response headers ([`with_header`](Self::with_header))
/// and a delay before it takes effect ([`with_delay`](Self::with_delay)).
///
/// ```
/// use std::time::Duration;
/// use evolution_emulator::{Fault, Malformed};
///
/// let throttled = Fault::status(429).with_header("retry-after", "1");
/// let slow = Fault::delay(Duration::from_millis(500));
/// let short_lived = Fault::patch_body(serde_json::json!({ "expires_in": 10 }));
/// let garbage = Fault::malformed(Malformed::NotJson);
/// let dropped = Fault::close();
/// let failed_midway = Fault::stream_error_after(
///     3,
///     serde_json::json!({ "error": { "message": "generation failed", "code": 500 } }),
/// );
/// let silent_first = Fault::stall_stream(0, Duration::from_secs(30));
/// # let _ = (throttled, slow, short_lived, garbage, dropped, failed_midway, silent_first);
/// ```
#[derive(Clone, Debug)]
pub struct Fault {
    pub(crate) action: Action,
    pub(crate) delay: Duration,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
}

/// What a fault does once its delay has passed.
#[derive(Clone, Debug)]
pub(crate) enum Action {
    /// Answer normally.
    Pass,
    /// Answer this status with a JSON error body.
    Status {
        status: StatusCode,
        message: Option<String>,
    },
    /// Answer exactly these bytes.
    Raw {
        status: StatusCode,
        content_type: HeaderValue,
        body: Bytes,
    },
    /// Answer 200 with this JSON value.
    Json(Value),
    /// Answer normally, with these top-level fields merged into a successful JSON answer.
    Patch(serde_json::Map<String, Value>),
    /// Answer 200 with a canned malformed body.
    Malformed(Malformed),
    /// Drop the connection without answering.
    Close,
    /// Send the answer's head and this many body chunks, then drop the connection.
    Cut(usize),
    /// On a stream: this many events, then this `data:` event, then `data: [DONE]`.
    StreamError { after: usize, event: Bytes },
    /// Send the answer's head and this many body chunks at once, then wait before the rest.
    Stall { after: usize, pause: Duration },
}

/// Kinds of malformed `200 OK` answers, each shaped for the route it is injected into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Malformed {
    /// A body that is not JSON at all (`content-type: application/json` nonetheless).
    NotJson,
    /// An empty body.
    Empty,
    /// The start of a plausible answer, cut off mid-JSON.
    Truncated,
    /// Valid JSON without the field a client needs: `access_token` (IAM), `choices` (chat) or
    /// `data` (models, embeddings).
    MissingField,
}

impl Fault {
    fn new(action: Action) -> Self {
        Fault {
            action,
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    /// Answer `code` with an OpenAI-style JSON error body.
    ///
    /// # Panics
    ///
    /// If `code` is not a valid HTTP status (100..=999).
    pub fn status(code: u16) -> Self {
        Self::try_status(code).expect("Fault::status: invalid HTTP status code")
    }

    pub(crate) fn try_status(code: u16) -> Option<Self> {
        let status = StatusCode::from_u16(code).ok()?;
        Some(Self::new(Action::Status {
            status,
            message: None,
        }))
    }

    /// Wait `delay`, then answer normally.
    pub fn delay(delay: Duration) -> Self {
        Self::new(Action::Pass).with_delay(delay)
    }

    /// Answer `200 OK` with exactly this JSON value as the body.
    ///
    /// Named for its main use, odd IAM answers (`{"access_token": "x", "expires_in": "soon"}`),
    /// but it works on every route. No token is issued.
    pub fn iam_body(body: Value) -> Self {
        Self::new(Action::Json(body))
    }

    /// Answer normally, but merge the fields of `patch` (a JSON object) into the successful JSON
    /// answer; a `null` field removes that field.
    ///
    /// On IAM a real, working token is issued, so this is the way to report an odd `expires_in`
    /// for a token that works: `json!({"expires_in": 10})`, `json!({"expires_in": null})` (missing),
    /// `json!({"expires_in": "3600"})`, `json!({"expires_in": 1_000_000_000_000u64})`. The token's
    /// real lifetime stays the configured TTL. Error answers and streams are not patched; a
    /// non-object `patch` patches nothing.
    pub fn patch_body(patch: Value) -> Self {
        let fields = match patch {
            Value::Object(fields) => fields,
            _ => serde_json::Map::new(),
        };
        Self::new(Action::Patch(fields))
    }

    /// Answer exactly `body` with this status and `content-type`.
    ///
    /// # Panics
    ///
    /// If `status` is not a valid HTTP status or `content_type` is not a valid header value.
    pub fn raw_body(status: u16, content_type: &str, body: impl Into<Bytes>) -> Self {
        Self::try_raw_body(status, content_type, body.into())
            .expect("Fault::raw_body: invalid status or content type")
    }

    pub(crate) fn try_raw_body(status: u16, content_type: &str, body: Bytes) -> Option<Self> {
        Some(Self::new(Action::Raw {
            status: StatusCode::from_u16(status).ok()?,
            content_type: HeaderValue::from_str(content_type).ok()?,
            body,
        }))
    }

    /// Answer `200 OK` with a malformed body of the given kind.
    pub fn malformed(kind: Malformed) -> Self {
        Self::new(Action::Malformed(kind))
    }

    /// Drop the TCP connection without sending any HTTP response.
    ///
    /// The request has been read in full, so the client sees the connection closed before a
    /// response arrived.
    pub fn close() -> Self {
        Self::new(Action::Close)
    }

    /// Send the response head and the first `chunks` body chunks, then drop the connection.
    ///
    /// On a streaming chat request a chunk is one server-sent event (the first is the
    /// `role: assistant` event), so `data: [DONE]` never arrives. On any other answer the head
    /// (with the full `content-length`) and the first half of the body are sent.
    pub fn cut_stream(chunks: usize) -> Self {
        Self::new(Action::Cut(chunks))
    }

    /// Fail a stream after its `200` head, as a vLLM-like server does when generation fails
    /// midway: send the first `chunks` events (the first is the `role: assistant` event), then
    /// `data: <body>` and `data: [DONE]`.
    ///
    /// `body` is the whole event payload, usually OpenAI's error envelope:
    /// `json!({"error": {"message": "...", "type": "server_error", "code": 500}})`. A
    /// non-streamed answer is not affected (it is answered normally). For an `event: error`
    /// line or any other framing, use [`raw_body`](Self::raw_body).
    pub fn stream_error_after(chunks: usize, body: Value) -> Self {
        let mut event = b"data: ".to_vec();
        // Serializing a `Value` into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut event, &body);
        event.extend_from_slice(b"\n\n");
        Self::new(Action::StreamError {
            after: chunks,
            event: Bytes::from(event),
        })
    }

    /// Stall a stream after its `200` head, as an overloaded server does: send the head at
    /// once, then the first `after_chunks` events (the first is the `role: assistant` event),
    /// then wait `pause` before sending the rest as usual.
    ///
    /// `after_chunks = 0` sends nothing after the head for `pause` (a first-chunk timeout
    /// test); a larger value is an idle gap mid-stream. The wait comes on top of the stream's
    /// [interval](crate::EmulatorBuilder::stream_interval); with `after_chunks` at or past the
    /// stream's last event there is nothing left to wait for. The wait is a timer on tokio's
    /// clock (virtual under `tokio::time::pause()`), and ends with the connection: a client
    /// that goes away mid-stall drops the stream (see
    /// [`Stats::chat_streams_open`](crate::Stats::chat_streams_open)).
    ///
    /// On any other answer the head (with the full `content-length`) leaves at once and the
    /// body in two halves, the pause before the first (`after_chunks = 0`) or between them.
    pub fn stall_stream(after_chunks: usize, pause: Duration) -> Self {
        Self::new(Action::Stall {
            after: after_chunks,
            pause,
        })
    }

    /// Add a response header, e.g. `("retry-after", "1")` or `("retry-after-ms", "200")`.
    ///
    /// It is set on whatever answer the fault produces, including a normal one.
    ///
    /// # Panics
    ///
    /// If `name` or `value` is not a valid header name or value.
    pub fn with_header(self, name: &str, value: &str) -> Self {
        self.try_with_header(name, value)
            .expect("Fault::with_header: invalid header name or value")
    }

    pub(crate) fn try_with_header(mut self, name: &str, value: &str) -> Option<Self> {
        let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
        let value = HeaderValue::from_str(value).ok()?;
        self.headers.push((name, value));
        Some(self)
    }

    /// Wait this long before the fault takes effect. Runs on tokio's clock, so paused-time tests
    /// see it as virtual time.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Use this message in the JSON error body of a [`Fault::status`] answer.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        if let Action::Status { message: slot, .. } = &mut self.action {
            *slot = Some(message.into());
        }
        self
    }
}
