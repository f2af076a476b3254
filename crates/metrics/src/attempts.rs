//! Counting the attempts of one logical call: [`Attempts`] and [`AttemptCounterLayer`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

/// The number of attempts of one logical call so far, shared by every copy of its request
/// (a request extension).
#[derive(Debug, Clone, Default)]
pub struct Attempts(Arc<AtomicU32>);

impl Attempts {
    /// A counter at 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The attempts counted so far.
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts one more attempt and returns the new count.
    pub fn increment(&self) -> u32 {
        self.0.fetch_add(1, Ordering::Relaxed).saturating_add(1)
    }

    /// The counter in `request`'s extensions, if an outer layer put one there.
    pub fn of<B>(request: &Request<B>) -> Option<&Self> {
        request.extensions().get::<Self>()
    }

    /// The counter in `request`'s extensions, inserting a new one if there is none: nested
    /// metrics layers share one counter.
    pub(crate) fn get_or_insert<B>(request: &mut Request<B>) -> Self {
        request
            .extensions_mut()
            .get_or_insert_with(Self::new)
            .clone()
    }
}

/// Applies [`AttemptCounter`]: counts the attempts of each logical call. Place it under
/// the retry layer.
///
/// [`MetricsService`](crate::MetricsService) puts an [`Attempts`] counter in the request's
/// extensions; an [`AttemptCounter`] placed *under* the retry layer adds one to it each time
/// a (re)sent copy of the request passes, and the metrics layer records the total when the
/// call ends. Copies made by a retry policy must carry the extensions over (the counter is
/// shared, not copied, since it is an `Arc`).
///
/// # Example
///
/// ```
/// use std::convert::Infallible;
/// use evolution_metrics::{AttemptCounterLayer, Attempts, Metrics};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let metrics = Metrics::new();
/// let service = ServiceBuilder::new()
///     .layer(metrics.layer())
///     // a `RetryLayer` goes here
///     .layer(AttemptCounterLayer::new())
///     .service(service_fn(|request: http::Request<()>| async move {
///         let attempts = Attempts::of(&request).map(Attempts::get);
///         assert_eq!(attempts, Some(1));
///         Ok::<_, Infallible>(http::Response::new(()))
///     }));
/// service.oneshot(http::Request::new(())).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct AttemptCounterLayer {
    _private: (),
}

impl AttemptCounterLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for AttemptCounterLayer {
    type Service = AttemptCounter<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AttemptCounter::new(inner)
    }
}

/// Counts every request that passes in its [`Attempts`] extension, if it has one.
/// See [`AttemptCounterLayer`].
#[derive(Debug, Clone)]
pub struct AttemptCounter<S> {
    inner: S,
}

impl<S> AttemptCounter<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
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

impl<S, B> Service<Request<B>> for AttemptCounter<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if let Some(attempts) = Attempts::of(&request) {
            attempts.increment();
        }
        self.inner.call(request)
    }
}
