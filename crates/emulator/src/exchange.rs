//! The life of one request on an emulated route: count it, add latency, apply the next fault,
//! answer.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::Value;
use tokio::time::sleep;

use crate::body::Chunks;
use crate::conn::ConnectionCloser;
use crate::error;
use crate::fault::{Action, Fault, Malformed};
use crate::route::Route;
use crate::state::Shared;
use crate::stats::{Counters, InFlight, ReportedUsage, StreamGauge, UsageTally};

/// Largest request body read; anything longer is a 400.
const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// A route's normal answer, before faults shape it.
#[derive(Debug)]
pub(crate) enum Answer {
    /// A JSON answer (success or error), with the token usage it reports, if any.
    Json {
        status: StatusCode,
        body: Bytes,
        usage: Option<ReportedUsage>,
    },
    /// `200 OK` server-sent events, each chunk one complete event; `usage` names the event
    /// that reports token usage (its index) and what it reports.
    Events {
        events: Vec<Bytes>,
        usage: Option<(usize, ReportedUsage)>,
    },
}

impl Answer {
    pub(crate) fn ok(body: Bytes) -> Self {
        Answer::Json {
            status: StatusCode::OK,
            body,
            usage: None,
        }
    }

    /// A successful answer whose body reports `usage`.
    pub(crate) fn reporting(body: Bytes, usage: ReportedUsage) -> Self {
        Answer::Json {
            status: StatusCode::OK,
            body,
            usage: Some(usage),
        }
    }

    pub(crate) fn error(status: StatusCode, message: &str, code: Option<&str>) -> Self {
        Answer::Json {
            status,
            body: error::body(message, error::kind_for(status), code),
            usage: None,
        }
    }

    /// On a stream: the first `after` events, then `event`, then the last one (`[DONE]`).
    /// Any other answer is left as it is.
    fn with_stream_error(self, after: usize, event: Bytes) -> Self {
        match self {
            Answer::Events {
                mut events,
                mut usage,
            } => {
                let done = events.pop();
                events.truncate(after);
                usage = usage.filter(|&(at, _)| at < events.len());
                events.push(event);
                events.extend(done);
                Answer::Events { events, usage }
            }
            json => json,
        }
    }

    /// The response; a stream's events go out paced by `pace`.
    fn into_response(self, pace: &Pace<'_>) -> Response {
        match self {
            Answer::Json {
                status,
                body,
                usage,
            } => {
                // The whole body goes to the connection with the head.
                if let Some(usage) = usage {
                    pace.tally.add(usage);
                }
                error::json(status, body)
            }
            Answer::Events { events, usage } => {
                event_stream(pace.apply(Chunks::new(events), usage))
            }
        }
    }

    /// Send part of the answer, then drop the connection.
    fn into_cut_response(
        self,
        events: usize,
        closer: ConnectionCloser,
        pace: &Pace<'_>,
    ) -> Response {
        match self {
            Answer::Json { status, body, .. } => {
                let half = body.slice(..body.len() / 2);
                streamed_json(status, body.len(), Chunks::cut_after(vec![half], 1, closer))
            }
            Answer::Events { events: all, usage } => {
                // Never as far as the last event, `data: [DONE]`.
                let sent = events.min(all.len().saturating_sub(1));
                event_stream(pace.apply(Chunks::cut_after(all, sent, closer), usage))
            }
        }
    }

    /// Send the head at once and the first `events` events, then wait `pause` before the
    /// rest. A JSON answer's body is sent in two halves, the pause before the first (`events`
    /// 0) or between them.
    fn into_stalled_response(self, events: usize, pause: Duration, pace: &Pace<'_>) -> Response {
        match self {
            Answer::Json {
                status,
                body,
                usage,
            } => {
                let length = body.len();
                let halves = vec![body.slice(..length / 2), body.slice(length / 2..)];
                let mut chunks = Chunks::new(halves).stalled(events.min(1), pause);
                if let Some(usage) = usage {
                    // Reported once the whole body is out.
                    chunks = chunks.reporting(1, usage, pace.tally.clone());
                }
                streamed_json(status, length, chunks)
            }
            Answer::Events { events: all, usage } => {
                event_stream(pace.apply(Chunks::new(all).stalled(events, pause), usage))
            }
        }
    }
}

/// A JSON answer of `length` bytes whose body `chunks` sends: the head, with the full
/// `content-length`, leaves at once.
fn streamed_json(status: StatusCode, length: usize, chunks: Chunks) -> Response {
    let mut response = error::json(status, Bytes::new());
    *response.body_mut() = Body::from_stream(chunks);
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response
}

/// How a stream's events are sent: the gap between two, the gauge of open streams, and the
/// tally of the usage answers report.
struct Pace<'a> {
    interval: Duration,
    gauge: &'a Arc<StreamGauge>,
    tally: &'a Arc<UsageTally>,
}

impl Pace<'_> {
    fn apply(&self, chunks: Chunks, usage: Option<(usize, ReportedUsage)>) -> Chunks {
        let chunks = chunks
            .with_interval(self.interval)
            .counted(self.gauge.open());
        match usage {
            Some((at, usage)) => chunks.reporting(at, usage, self.tally.clone()),
            None => chunks,
        }
    }
}

fn event_stream(chunks: Chunks) -> Response {
    let mut response = Response::new(Body::from_stream(chunks));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// One request being handled: counted, and held in its route's in-flight gauge until dropped.
#[derive(Debug)]
pub(crate) struct Exchange<'a> {
    shared: &'a Shared,
    route: Route,
    closer: Option<ConnectionCloser>,
    _in_flight: InFlight<'a>,
}

impl<'a> Exchange<'a> {
    pub(crate) fn begin(shared: &'a Shared, route: Route, request: &Request) -> Self {
        Exchange {
            shared,
            route,
            closer: request.extensions().get::<ConnectionCloser>().cloned(),
            _in_flight: shared.counters.route(route).enter(),
        }
    }

    /// Record the answer's status and send it.
    pub(crate) fn finish(self, response: Response) -> Response {
        self.shared
            .counters
            .route(self.route)
            .status(response.status().as_u16());
        response
    }

    /// Apply the route's latency and next fault, computing the normal answer with `normal`
    /// unless the fault replaces it.
    pub(crate) async fn serve(self, normal: impl FnOnce() -> Answer) -> Response {
        self.serve_with(None, normal).await
    }

    /// As [`serve`](Self::serve), with `fault` (a key's) instead of the route's next one
    /// when there is one: the route's queued faults are left for later requests.
    async fn serve_with(self, fault: Option<Fault>, normal: impl FnOnce() -> Answer) -> Response {
        let latency = self.shared.latency(self.route);
        let pace = Pace {
            interval: self.shared.stream_interval(),
            gauge: &self.shared.counters.open_streams,
            tally: &self.shared.counters.reported,
        };
        if !latency.is_zero() {
            sleep(latency).await;
        }
        let Some(fault) = fault.or_else(|| self.shared.faults.next(self.route)) else {
            return self.finish(normal().into_response(&pace));
        };
        Counters::bump(&self.shared.counters.faults_injected);
        if !fault.delay.is_zero() {
            sleep(fault.delay).await;
        }
        let mut response = match fault.action {
            Action::Pass => normal().into_response(&pace),
            Action::Status { status, message } => {
                let message = message.unwrap_or_else(|| format!("injected fault: {status}"));
                error::respond(status, &message, Some("injected_fault"))
            }
            Action::Raw {
                status,
                content_type,
                body,
            } => {
                let mut response = error::json(status, body);
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, content_type);
                response
            }
            Action::Json(value) => error::json(StatusCode::OK, to_bytes(&value)),
            Action::Patch(fields) => patch(normal(), fields).into_response(&pace),
            Action::Malformed(kind) => error::json(StatusCode::OK, malformed(self.route, kind)),
            Action::Close => return self.drop_connection().await,
            Action::StreamError { after, event } => normal()
                .with_stream_error(after, event)
                .into_response(&pace),
            Action::Stall { after, pause } => normal().into_stalled_response(after, pause, &pace),
            Action::Cut(events) => match self.closer.clone() {
                Some(closer) => {
                    Counters::bump(&self.shared.counters.connections_dropped);
                    normal().into_cut_response(events, closer, &pace)
                }
                None => normal().into_response(&pace),
            },
        };
        let headers = response.headers_mut();
        for (name, value) in fault.headers {
            headers.insert(name, value);
        }
        self.finish(response)
    }

    /// Drop the connection without answering; the returned future never completes.
    async fn drop_connection(self) -> Response {
        let Some(closer) = self.closer.clone() else {
            return self.finish(error::respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot drop a connection outside the emulator's server",
                None,
            ));
        };
        Counters::bump(&self.shared.counters.connections_dropped);
        closer.close();
        std::future::pending().await
    }
}

/// An inference route (chat, embeddings): the request is counted (for its key too), its body
/// read and recorded, its key's latency (a slow deployment) and the route's latency applied,
/// then its key's fault (a failing deployment) or else the route's next one, and `answer`
/// makes the normal answer from the headers and the body.
pub(crate) async fn inference(
    shared: &Shared,
    route: Route,
    request: Request,
    answer: fn(&Shared, &HeaderMap, Result<Bytes, Answer>) -> Answer,
) -> Response {
    let exchange = Exchange::begin(shared, route, &request);
    let (parts, body) = request.into_parts();
    let body = read_body(body).await;
    if let Ok(body) = &body {
        shared.record_body(route, body);
    }
    let key_fault = crate::auth::key_effects(shared, route, &parts.headers).await;
    exchange
        .serve_with(key_fault, || answer(shared, &parts.headers, body))
        .await
}

/// Read a request body in full; a body that cannot be read is a ready-made 400 answer.
pub(crate) async fn read_body(body: Body) -> Result<Bytes, Answer> {
    axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| {
        Answer::error(
            StatusCode::BAD_REQUEST,
            "could not read the request body (at most 4 MiB)",
            None,
        )
    })
}

fn to_bytes(value: &Value) -> Bytes {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .unwrap_or_default()
}

/// Merge `fields` into a successful JSON object answer; `null` removes a field.
fn patch(answer: Answer, fields: serde_json::Map<String, Value>) -> Answer {
    let Answer::Json {
        status,
        body,
        usage,
    } = answer
    else {
        return answer;
    };
    let unpatched = |body| Answer::Json {
        status,
        body,
        usage,
    };
    if !status.is_success() {
        return unpatched(body);
    }
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(&body) else {
        return unpatched(body);
    };
    for (name, value) in fields {
        if value.is_null() {
            object.remove(&name);
        } else {
            object.insert(name, value);
        }
    }
    // An answer that reported usage reports what its patched body says.
    let usage = usage.map(|_| ReportedUsage::of(&object));
    Answer::Json {
        status,
        body: to_bytes(&Value::Object(object)),
        usage,
    }
}

/// A canned malformed `200 OK` body shaped for `route`.
fn malformed(route: Route, kind: Malformed) -> Bytes {
    let body: &'static str = match (kind, route) {
        (Malformed::NotJson, _) => "<html><body><h1>502 Bad Gateway</h1></body></html>",
        (Malformed::Empty, _) => "",
        (Malformed::Truncated, Route::Iam) => {
            r#"{"access_token":"evo_00000000000000000000000000000000","expires_in":36"#
        }
        (Malformed::Truncated, Route::Chat) => {
            r#"{"id":"chatcmpl-0","object":"chat.completion","created":0,"model":"demo-model","choi"#
        }
        (Malformed::Truncated, Route::Models) => r#"{"object":"list","data":[{"id":"demo-"#,
        (Malformed::MissingField, Route::Iam) => {
            r#"{"expires_in":3600,"token_type":"Bearer","refresh_token":"","id_token":"evo_id_0"}"#
        }
        (Malformed::MissingField, Route::Chat) => {
            r#"{"id":"chatcmpl-0","object":"chat.completion","created":0,"model":"demo-model","usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#
        }
        (Malformed::MissingField, Route::Models) => r#"{"object":"list"}"#,
        (Malformed::Truncated, Route::Embeddings) => {
            r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0123,-0.04"#
        }
        (Malformed::MissingField, Route::Embeddings) => {
            r#"{"object":"list","model":"demo-model","usage":{"prompt_tokens":1,"total_tokens":1}}"#
        }
    };
    Bytes::from_static(body.as_bytes())
}
