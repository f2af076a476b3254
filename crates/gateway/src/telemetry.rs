//! The gateway's own series, beside every `evolution_*` series of the client stack.
//!
//! A request is counted when its answer ends (a stream when its last chunk is sent, or when
//! the client goes away), so the duration of a stream is the stream's, and the in-flight
//! gauge counts open streams.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use pin_project_lite::pin_project;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

/// Requests answered, by `route` and `status`.
pub const REQUESTS_TOTAL: &str = "evolution_gateway_requests_total";
/// Time from a request's arrival to the end of its answer (a stream's last chunk), by `route`.
pub const REQUEST_DURATION_SECONDS: &str = "evolution_gateway_request_duration_seconds";
/// Time from a request's arrival to the first chunk of its streamed answer (time to first
/// token, as the gateway's clients see it), by `route`.
pub const TIME_TO_FIRST_CHUNK_SECONDS: &str = "evolution_gateway_time_to_first_chunk_seconds";
/// Requests being answered now (open streams included).
pub const REQUESTS_IN_FLIGHT: &str = "evolution_gateway_requests_in_flight";
/// Suggested buckets for [`REQUEST_DURATION_SECONDS`]: 1 ms to 5 minutes (a long stream).
pub const REQUEST_DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// The gateway's histograms with their suggested buckets, for an exporter that needs them
/// up front (as [`histogram_buckets`](evolution_client::metrics::names::histogram_buckets)
/// gives the client stack's).
pub fn histogram_buckets() -> [(&'static str, &'static [f64]); 2] {
    [
        (REQUEST_DURATION_SECONDS, REQUEST_DURATION_BUCKETS),
        (TIME_TO_FIRST_CHUNK_SECONDS, REQUEST_DURATION_BUCKETS),
    ]
}

/// Describes the series to the installed recorder (the `# HELP` lines).
pub fn describe() {
    describe_counter!(
        REQUESTS_TOTAL,
        Unit::Count,
        "Requests answered by the gateway, by route and status"
    );
    describe_histogram!(
        REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time from a request's arrival to the end of its answer, by route"
    );
    describe_histogram!(
        TIME_TO_FIRST_CHUNK_SECONDS,
        Unit::Seconds,
        "Time from a request's arrival to the first chunk of its streamed answer, by route"
    );
    describe_gauge!(
        REQUESTS_IN_FLIGHT,
        Unit::Count,
        "Requests the gateway is answering now, open streams included"
    );
}

/// The route label of a path: one of a fixed set, so a scan of random paths cannot grow the
/// series without bound.
pub(crate) fn route_of(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" => "chat_completions",
        "/v1/embeddings" => "embeddings",
        "/v1/models" => "models",
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        _ => "other",
    }
}

/// One request, from arrival until its answer is done; records itself when dropped.
#[derive(Debug)]
pub(crate) struct InFlight {
    route: &'static str,
    status: u16,
    started: Instant,
    /// The load-shedding slot of an upstream call, freed with the answer.
    permit: Option<OwnedSemaphorePermit>,
    /// The answer is an event stream whose first chunk has not been sent yet.
    awaiting_first_chunk: bool,
}

impl InFlight {
    pub(crate) fn start(route: &'static str) -> Self {
        metrics::gauge!(REQUESTS_IN_FLIGHT).increment(1.0);
        Self {
            route,
            status: 0,
            started: Instant::now(),
            permit: None,
            awaiting_first_chunk: false,
        }
    }

    pub(crate) fn hold(&mut self, permit: OwnedSemaphorePermit) {
        self.permit = Some(permit);
    }

    /// The answer's head: `streamed` if it is a successful event stream, whose first chunk
    /// is then timed.
    pub(crate) fn answered(&mut self, status: http::StatusCode, streamed: bool) {
        self.status = status.as_u16();
        self.awaiting_first_chunk = streamed && status.is_success();
    }

    /// A frame of the answer's body is going out.
    fn sent_data(&mut self) {
        if std::mem::take(&mut self.awaiting_first_chunk) {
            metrics::histogram!(TIME_TO_FIRST_CHUNK_SECONDS, "route" => self.route)
                .record(self.started.elapsed().as_secs_f64());
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(REQUESTS_IN_FLIGHT).decrement(1.0);
        // 0: dropped before an answer was made (the client went away first).
        let status = if self.status == 0 {
            "none".to_owned()
        } else {
            self.status.to_string()
        };
        metrics::counter!(REQUESTS_TOTAL, "route" => self.route, "status" => status).increment(1);
        metrics::histogram!(REQUEST_DURATION_SECONDS, "route" => self.route)
            .record(self.started.elapsed().as_secs_f64());
    }
}

pin_project! {
    /// An answer's body that ends the request's [`InFlight`] with itself.
    pub(crate) struct Tracked<B> {
        #[pin]
        inner: B,
        in_flight: Option<InFlight>,
    }
}

impl<B> Tracked<B> {
    pub(crate) fn new(inner: B, in_flight: InFlight) -> Self {
        Self {
            inner,
            in_flight: Some(in_flight),
        }
    }
}

impl<B: Body<Data = Bytes>> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let frame = this.inner.poll_frame(cx);
        match &frame {
            Poll::Ready(Some(Ok(data))) if data.data_ref().is_some_and(|data| !data.is_empty()) => {
                if let Some(in_flight) = this.in_flight.as_mut() {
                    in_flight.sent_data();
                }
            }
            // Done: record now rather than when hyper gets round to dropping the body.
            Poll::Ready(None) => drop(this.in_flight.take()),
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_paths_share_one_label() {
        assert_eq!(route_of("/v1/chat/completions"), "chat_completions");
        assert_eq!(route_of("/wp-admin"), "other");
        assert_eq!(route_of("/v1/models/x"), "other");
    }
}
