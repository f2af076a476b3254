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
/// Requests being answered now (open streams included).
pub const REQUESTS_IN_FLIGHT: &str = "evolution_gateway_requests_in_flight";
/// Suggested buckets for [`REQUEST_DURATION_SECONDS`]: 1 ms to 5 minutes (a long stream).
pub const REQUEST_DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

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
}

impl InFlight {
    pub(crate) fn start(route: &'static str) -> Self {
        metrics::gauge!(REQUESTS_IN_FLIGHT).increment(1.0);
        Self {
            route,
            status: 0,
            started: Instant::now(),
            permit: None,
        }
    }

    pub(crate) fn hold(&mut self, permit: OwnedSemaphorePermit) {
        self.permit = Some(permit);
    }

    pub(crate) fn answered(&mut self, status: http::StatusCode) {
        self.status = status.as_u16();
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
        if let Poll::Ready(None) = frame {
            // Done: record now rather than when hyper gets round to dropping the body.
            this.in_flight.take();
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
