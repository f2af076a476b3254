//! [`MetricsService`].

use std::task::{Context, Poll};

use evolution_token::BoxError;
use http::{Request, Response};
use tokio::time::Instant;
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::{Attempts, Metrics};

/// Records one observation per logical call: its latency until the response head, its
/// [`Outcome`](crate::Outcome) and status, and its attempts (counted by an
/// [`AttemptCounter`](crate::AttemptCounter) below). See the [crate docs](crate).
///
/// Errors are passed through unchanged, as [`BoxError`].
#[derive(Debug, Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Metrics,
}

impl<S> MetricsService<S> {
    /// Wraps `inner`, recording into `metrics`.
    pub fn new(inner: S, metrics: Metrics) -> Self {
        Self { inner, metrics }
    }

    /// The handle it records into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for MetricsService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let start = Instant::now();
        let mut attempts = 0;
        let future = Attempts::scope(&mut attempts, || self.inner.call(request));
        ResponseFuture::new(future, self.metrics.clone(), attempts, start)
    }
}
