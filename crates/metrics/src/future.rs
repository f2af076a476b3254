//! Future types

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use evolution_token::BoxError;
use http::Response;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::pending::{Observed, PendingCall};
use crate::{Attempts, Metrics, Outcome};

pin_project! {
    /// Response future of [`MetricsService`](crate::MetricsService).
    ///
    /// Records when it completes (a success head inside a [`capture`](crate::capture) is
    /// handed to it instead), or, if dropped first, records the call as
    /// [`Outcome::Cancelled`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // `None` once recorded.
        observation: Option<Observation>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(observation) = this.project().observation.take() {
                observation.finish(Outcome::Cancelled, None);
            }
        }
    }
}

struct Observation {
    metrics: Metrics,
    // Counted while the inner service is called or polled (0: no counter below).
    attempts: u32,
    start: Instant,
}

impl Observation {
    fn finish(self, outcome: Outcome, status: Option<http::StatusCode>) {
        self.metrics
            .record_request(outcome, status, self.start.elapsed(), self.attempts);
    }

    /// A success head: handed to an open [`capture`](crate::capture), which records it once
    /// the body is read, or recorded now as [`Outcome::Ok`].
    fn finish_success(self, status: http::StatusCode) {
        let call = Observed {
            duration: self.start.elapsed(),
            metrics: self.metrics,
            status,
            attempts: self.attempts,
        };
        if let Some(call) = PendingCall::offer(call) {
            call.record(Outcome::Ok);
        }
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, metrics: Metrics, attempts: u32, start: Instant) -> Self {
        Self {
            inner,
            observation: Some(Observation {
                metrics,
                attempts,
                start,
            }),
        }
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ResBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let observation = this.observation.as_mut().expect("polled after completion");
        let poll = Attempts::scope(&mut observation.attempts, || this.inner.poll(cx));
        let result = ready!(poll).map_err(Into::into);
        let observation = this.observation.take().expect("polled after completion");
        match &result {
            Ok(response) if response.status().is_success() => {
                observation.finish_success(response.status());
            }
            Ok(response) => {
                let status = response.status();
                observation.finish(Outcome::from_status(status), Some(status));
            }
            Err(error) => observation.finish(Outcome::from_error(&**error), None),
        }
        Poll::Ready(result)
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
