//! A time limit that the layers below it can see.
//!
//! [`Deadline`] is a timeout like tower's `Timeout`, and fails with the same error
//! (`tower::timeout::error::Elapsed`), so classifiers of timeouts need no change. It adds one
//! thing: while it calls or polls the service below it, that service can see the instant
//! the time runs out. [`Auth`](crate::Auth) below a `Deadline` uses it to end a wait for a
//! token at that instant with [`TokenError::Deadline`](crate::TokenError::Deadline), which
//! says that IAM did not answer, rather than with an `Elapsed` that blames the server the
//! request was for.
//!
//! Put it above everything an attempt may wait on: with a `Deadline` above [`Auth`](crate::Auth),
//! the wait for a token, for the shared cache's lock, and the resend after a 401 all count
//! against one limit. Nested deadlines are allowed; the layers below see the earlier one.
//!
//! The deadline is passed in a thread-local scope around each call and poll, not in the
//! request: layers that keep copies of the request for resends would copy an extension map
//! (an allocation) with each. A layer in between that moves the call to another task (such
//! as tower's `Buffer`) takes it out of the scope; the time limit still holds, but `Auth`
//! then fails its wait with `Elapsed`.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use evolution_token::{AuthLayer, Credentials, DeadlineLayer, TokenManager};
//! use tower::{ServiceBuilder, service_fn};
//!
//! # fn main() -> Result<(), evolution_token::TokenError> {
//! let tokens = TokenManager::builder(Credentials::new("key-id", "secret")).build()?;
//! let service = ServiceBuilder::new()
//!     // One limit for the token, the request and the resend after a 401.
//!     .layer(DeadlineLayer::new(Duration::from_secs(60)))
//!     .layer(AuthLayer::new(tokens))
//!     .service(service_fn(|_request: http::Request<Bytes>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::new()))
//!     }));
//! # drop(service);
//! # Ok(()) }
//! ```

pub mod future;
mod layer;

use std::cell::Cell;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_service::Service;

use self::future::ResponseFuture;
pub use self::layer::DeadlineLayer;
use crate::BoxError;

/// Fails a call that takes longer than its limit with `tower::timeout::error::Elapsed`, and
/// lets the services below see when that will be. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    limit: Duration,
}

impl<S> Deadline<S> {
    /// Wraps `inner`, limiting each call to `limit`.
    pub fn new(inner: S, limit: Duration) -> Self {
        Self { inner, limit }
    }

    /// The limit of each call.
    pub fn limit(&self) -> Duration {
        self.limit
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

impl<S, Request> Service<Request> for Deadline<S>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // As tower's `Timeout`: readiness is not limited, only the call.
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let until = Until::after(self.limit);
        let response = until.scope(|| self.inner.call(request));
        ResponseFuture::new(response, until)
    }
}

/// When the earliest [`Deadline`] calling or polling on this thread runs out, if any.
///
/// A service below a `Deadline` reads it in its `call` (or while its future is polled) to
/// bound waits of its own, as the key pool bounds its wait for a deployment to cool down.
pub fn current_deadline() -> Option<Instant> {
    CURRENT
        .try_with(Cell::get)
        .ok()
        .flatten()
        .map(|until| until.at)
}

/// When the innermost visible deadline runs out, and the limit that set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Until {
    pub(crate) at: Instant,
    pub(crate) limit: Duration,
}

thread_local! {
    /// The earliest deadline of the calls being made or polled on this thread.
    static CURRENT: Cell<Option<Until>> = const { Cell::new(None) };
}

/// About 30 years: what a limit too large to add to the clock is cut to (as tokio does).
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

impl Until {
    /// `limit` from now; a limit too large for the clock is cut to about 30 years.
    fn after(limit: Duration) -> Self {
        let now = Instant::now();
        let at = now.checked_add(limit).unwrap_or_else(|| now + FAR_FUTURE);
        Self { at, limit }
    }

    /// The deadline below the [`Deadline`] that is calling or polling on this thread, if it
    /// has run out.
    pub(crate) fn passed() -> Option<Self> {
        let until = CURRENT.try_with(Cell::get).ok().flatten()?;
        (Instant::now() >= until.at).then_some(until)
    }

    /// Runs `f` with `self`, or an earlier deadline already visible, visible to it.
    pub(crate) fn scope<R>(self, f: impl FnOnce() -> R) -> R {
        /// Restores the enclosing scope, even if `f` panics.
        struct Restore(Option<Until>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let _ = CURRENT.try_with(|current| current.set(self.0));
            }
        }

        let Ok(outer) = CURRENT.try_with(Cell::get) else {
            // The thread is being torn down: nothing below can look anyway.
            return f();
        };
        let visible = match outer {
            Some(outer) if outer.at <= self.at => outer,
            _ => self,
        };
        let _restore = Restore(outer);
        CURRENT.set(Some(visible));
        f()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visible() -> Option<Until> {
        CURRENT.get()
    }

    #[tokio::test(start_paused = true)]
    async fn the_earlier_of_nested_deadlines_is_visible_and_restored_after() {
        let long = Until::after(Duration::from_secs(60));
        let short = Until::after(Duration::from_secs(5));
        assert_eq!(visible(), None);
        long.scope(|| {
            assert_eq!(visible(), Some(long));
            short.scope(|| assert_eq!(visible(), Some(short)));
            assert_eq!(visible(), Some(long));
        });
        short.scope(|| long.scope(|| assert_eq!(visible(), Some(short))));
        assert_eq!(visible(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_has_passed_from_its_instant_on() {
        let until = Until::after(Duration::from_secs(5));
        until.scope(|| assert_eq!(Until::passed(), None));
        tokio::time::advance(Duration::from_secs(5)).await;
        until.scope(|| assert_eq!(Until::passed(), Some(until)));
        assert_eq!(Until::passed(), None, "outside the scope");
    }

    #[tokio::test(start_paused = true)]
    async fn a_limit_too_large_for_the_clock_is_cut() {
        let until = Until::after(Duration::MAX);
        assert!(until.at > Instant::now() + Duration::from_secs(86_400 * 365));
        assert_eq!(until.limit, Duration::MAX);
    }
}
