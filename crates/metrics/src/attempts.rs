//! Counting the attempts of one logical call: [`Attempts`] and [`AttemptCounterLayer`].
//!
//! The count lives in a thread-local scope that [`MetricsService`](crate::MetricsService)
//! opens around each call and each poll of the service below it, not in the request: the
//! retry, fallback and auth layers copy the request for every possible resend, and a
//! request extension would make each copy allocate a map of its own.

use std::cell::Cell;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

thread_local! {
    /// The attempts of the call whose service is being called or polled on this thread,
    /// if a metrics layer above opened a scope.
    static CURRENT: Cell<Option<u32>> = const { Cell::new(None) };
}

/// The attempt count of the logical call in progress.
///
/// A [`MetricsService`](crate::MetricsService) makes the count current while it calls or
/// polls the service below it; an [`AttemptCounter`] under the retry layer adds one for
/// each (re)sent request. A layer between them that hands the call to another task (such
/// as tower's `Buffer`) takes it out of that scope: its attempts are then not counted, and
/// the call is recorded without an attempt count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempts {
    _private: (),
}

impl Attempts {
    /// The attempts counted so far for the call being made on this thread, or `None`
    /// outside a [`MetricsService`](crate::MetricsService)'s call.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use evolution_metrics::{AttemptCounterLayer, Attempts, Metrics};
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let service = ServiceBuilder::new()
    ///     .layer(Metrics::new().layer())
    ///     // a `RetryLayer` goes here
    ///     .layer(AttemptCounterLayer::new())
    ///     .service(service_fn(|_request: http::Request<()>| {
    ///         assert_eq!(Attempts::current(), Some(1));
    ///         async { Ok::<_, Infallible>(http::Response::new(())) }
    ///     }));
    /// service.oneshot(http::Request::new(())).await?;
    /// assert_eq!(Attempts::current(), None);
    /// # Ok(()) }
    /// ```
    pub fn current() -> Option<u32> {
        CURRENT.get()
    }

    /// Counts one more attempt of the current call, if there is one.
    fn increment() {
        CURRENT.with(|current| {
            if let Some(count) = current.get() {
                current.set(Some(count.saturating_add(1)));
            }
        });
    }

    /// Runs `f` with `*count` as the current call's attempts and leaves the count after it
    /// in `*count`; returns what `f` returned. Attempts counted inside are added to an
    /// enclosing scope as well, so nested metrics layers agree.
    ///
    /// `f`'s result is returned as it is, not in a tuple: it is often a large future, and
    /// each move of it is a copy.
    pub(crate) fn scope<R>(count: &mut u32, f: impl FnOnce() -> R) -> R {
        /// Restores the enclosing scope even if `f` panics.
        struct Restore {
            outer: Option<u32>,
            entered_with: u32,
        }
        impl Drop for Restore {
            fn drop(&mut self) {
                let inner = CURRENT.get().unwrap_or(self.entered_with);
                let added = inner.saturating_sub(self.entered_with);
                CURRENT.set(self.outer.map(|outer| outer.saturating_add(added)));
            }
        }

        let entered_with = *count;
        let restore = Restore {
            outer: CURRENT.replace(Some(entered_with)),
            entered_with,
        };
        let result = f();
        *count = CURRENT.get().unwrap_or(entered_with);
        drop(restore);
        result
    }
}

/// Applies [`AttemptCounter`]: counts the attempts of each logical call. Place it under
/// the retry layer.
///
/// A [`MetricsService`](crate::MetricsService) above opens a per-call scope (see
/// [`Attempts`]); an [`AttemptCounter`] placed *under* the retry layer adds one to it each
/// time a (re)sent copy of the request passes, and the metrics layer records the total
/// when the call ends. Nothing is added to the request.
///
/// # Example
///
/// ```
/// use std::convert::Infallible;
/// use evolution_metrics::{AttemptCounterLayer, Metrics};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let metrics = Metrics::new();
/// let service = ServiceBuilder::new()
///     .layer(metrics.layer())
///     // a `RetryLayer` goes here
///     .layer(AttemptCounterLayer::new())
///     .service(service_fn(|_request: http::Request<()>| async {
///         Ok::<_, Infallible>(http::Response::new(()))
///     }));
/// service.oneshot(http::Request::new(())).await?;
/// assert_eq!(metrics.stats().total_requests, 1);
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

/// Counts every request that passes as one attempt of the current call, if a metrics
/// layer above opened one. See [`AttemptCounterLayer`].
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

impl<S, Request> Service<Request> for AttemptCounter<S>
where
    S: Service<Request>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        Attempts::increment();
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_inside_a_scope_and_nested_scopes_add_up() {
        Attempts::increment();
        assert_eq!(Attempts::current(), None);

        let mut outer = 0;
        Attempts::scope(&mut outer, || {
            Attempts::increment();
            let mut inner = 0;
            Attempts::scope(&mut inner, || {
                Attempts::increment();
                Attempts::increment();
            });
            assert_eq!(inner, 2);
            assert_eq!(Attempts::current(), Some(3));
        });
        assert_eq!(outer, 3);
        assert_eq!(Attempts::current(), None);
    }

    #[test]
    fn a_panic_inside_restores_the_enclosing_scope() {
        let mut count = 5;
        Attempts::scope(&mut count, || {
            let caught = std::panic::catch_unwind(|| {
                Attempts::scope(&mut 0, || {
                    Attempts::increment();
                    panic!("inner service panicked");
                })
            });
            assert!(caught.is_err());
        });
        assert_eq!(count, 6);
        assert_eq!(Attempts::current(), None);
    }
}
