//! A debug-level span and event per HTTP attempt.
//!
//! tower-http's `TraceLayer` would do this, but it requires the request body to be an
//! `http_body::Body`, and the stack carries plain `Bytes` so that retry and fallback
//! can resend requests cheaply. This is the part of it we need.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::{Layer, Service};
use tracing::{Level, Span};

/// Wraps each attempt in a `evolution.http` span (method, URI) and logs the status
/// and latency at debug, failures at warn. Headers are never logged.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceLayer;

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Trace { inner }
    }
}

/// The service of [`TraceLayer`].
#[derive(Debug, Clone)]
pub struct Trace<S> {
    inner: S,
}

impl<S, B, ResBody> Service<Request<B>> for Trace<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Error: std::fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TraceFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let span = tracing::debug_span!(
            "evolution.http",
            method = %request.method(),
            uri = %request.uri(),
        );
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        // The clock is read only if an event could be logged: with no subscriber that
        // listens, an attempt costs nothing here.
        let started = tracing::enabled!(Level::WARN).then(Instant::now);
        TraceFuture {
            future,
            span,
            started,
        }
    }
}

pin_project! {
    /// Response future of [`Trace`].
    #[derive(Debug)]
    pub struct TraceFuture<F> {
        #[pin]
        future: F,
        span: Span,
        started: Option<Instant>,
    }
}

impl<F, ResBody, E> Future for TraceFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    E: std::fmt::Display,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let result = ready!(this.future.poll(cx));
        let Some(started) = this.started else {
            return Poll::Ready(result);
        };
        let latency = started.elapsed();
        match &result {
            Ok(response) => {
                tracing::debug!(status = response.status().as_u16(), ?latency, "response");
            }
            Err(error) => tracing::warn!(%error, ?latency, "request failed"),
        }
        Poll::Ready(result)
    }
}
