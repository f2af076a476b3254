//! Calls whose outcome waits for their body: [`PendingCall`] and [`capture`].
//!
//! A [`MetricsService`](crate::MetricsService) sees only the response head, but a `200` whose
//! body is then cut, malformed or carries an error (a completion stream that fails midway)
//! is a failed call to its caller. So a caller that reads the body can open a capture around
//! the call ([`capture`]): a success head (2xx) is then not recorded when it arrives, but
//! handed to the caller as a [`PendingCall`], which records it once the body is read:
//! [`ok`](PendingCall::ok) or [`body_error`](PendingCall::body_error) (`outcome="body_error"`,
//! with the head's status), or [`Outcome::Cancelled`] if it is dropped first. Its latency
//! is still the time to the response head.
//!
//! Outside a capture (any other user of the layer) a call is recorded at its head, as
//! before. The capture is a thread-local slot that [`Capture`] opens around each poll of the
//! call, like the attempt count's scope (see [`Attempts`](crate::Attempts)): nothing is added
//! to the request or the response, and a call costs two thread-local accesses per poll.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::StatusCode;
use pin_project_lite::pin_project;
use tokio::time::Duration;

use crate::{Metrics, Outcome};

/// The capture slot of the call being polled on this thread.
enum Slot {
    /// No capture is open: calls are recorded at their head.
    Closed,
    /// A capture is open and waits for a success head.
    Open,
    /// A capture took this call.
    Taken(PendingCall),
}

thread_local! {
    static SLOT: Cell<Slot> = const { Cell::new(Slot::Closed) };
}

/// A call whose response head was a success (2xx), not recorded yet: the caller records
/// it once it has read the body. See the [crate docs](crate).
///
/// Dropped without a verdict, it records the call as [`Outcome::Cancelled`]: its caller
/// gave up on the body (a [`ChatStream`] dropped before its end, for instance).
///
/// [`ChatStream`]: https://docs.rs/evolution-client/latest/evolution_client/struct.ChatStream.html
#[must_use = "a pending call is recorded as cancelled unless `ok()` or `body_error()` is called"]
pub struct PendingCall {
    // `None` once recorded.
    call: Option<Observed>,
}

/// A finished call with a success head, as the metrics layer observed it.
pub(crate) struct Observed {
    pub(crate) metrics: Metrics,
    pub(crate) status: StatusCode,
    /// Until the response head.
    pub(crate) duration: Duration,
    pub(crate) attempts: u32,
}

impl Observed {
    pub(crate) fn record(self, outcome: Outcome) {
        self.metrics
            .record_request(outcome, Some(self.status), self.duration, self.attempts);
    }
}

impl PendingCall {
    /// The call's answer was read whole and well-formed: [`Outcome::Ok`].
    pub fn ok(mut self) {
        self.record(Outcome::Ok);
    }

    /// The call's body was cut, malformed, or carried an error after its success head:
    /// [`Outcome::BodyError`], with the head's status.
    pub fn body_error(mut self) {
        self.record(Outcome::BodyError);
    }

    /// The call is being made again, its answer unused (a stream that sent nothing in
    /// time): nothing is recorded for it, so that the logical call is counted once, by the
    /// call that replaces it.
    pub fn resent(mut self) {
        self.call = None;
    }

    /// The status of the response head.
    pub fn status(&self) -> Option<StatusCode> {
        self.call.as_ref().map(|call| call.status)
    }

    fn record(&mut self, outcome: Outcome) {
        if let Some(call) = self.call.take() {
            call.record(outcome);
        }
    }

    /// Hands a finished success call to the open capture of this thread, if there is one;
    /// otherwise gives it back, to be recorded now.
    pub(crate) fn offer(call: Observed) -> Option<Observed> {
        SLOT.with(|slot| match slot.replace(Slot::Closed) {
            Slot::Open => {
                slot.set(Slot::Taken(PendingCall { call: Some(call) }));
                None
            }
            other => {
                slot.set(other);
                Some(call)
            }
        })
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        self.record(Outcome::Cancelled);
    }
}

impl fmt::Debug for PendingCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingCall")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// Polls `call` with a capture open: a success head recorded by a
/// [`MetricsService`](crate::MetricsService) inside is handed back as a [`PendingCall`]
/// beside the call's output, instead of being recorded as [`Outcome::Ok`] at once.
///
/// ```
/// use std::convert::Infallible;
/// use evolution_metrics::{Metrics, capture};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let metrics = Metrics::new();
/// let service = ServiceBuilder::new()
///     .layer(metrics.layer())
///     .service(service_fn(|_request: http::Request<()>| async {
///         Ok::<_, Infallible>(http::Response::new("{\"choi"))
///     }));
///
/// let (response, pending) = capture(service.oneshot(http::Request::new(()))).await;
/// assert_eq!(metrics.stats().total_requests, 0, "not recorded yet");
/// let body = response?.into_body();
/// let pending = pending.expect("a success head is pending");
/// if serde_json::from_str::<serde_json::Value>(body).is_ok() {
///     pending.ok();
/// } else {
///     pending.body_error();
/// }
/// let stats = metrics.stats();
/// assert_eq!((stats.total_requests, stats.successes), (1, 0));
/// # Ok(()) }
/// ```
pub fn capture<F: Future>(call: F) -> Capture<F> {
    Capture {
        call,
        pending: None,
    }
}

pin_project! {
    /// The future of [`capture`].
    pub struct Capture<F> {
        #[pin]
        call: F,
        pending: Option<PendingCall>,
    }
}

impl<F: Future> Future for Capture<F> {
    type Output = (F::Output, Option<PendingCall>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        /// Restores the enclosing slot, even if the call panics.
        struct Restore(Option<Slot>);
        impl Drop for Restore {
            fn drop(&mut self) {
                if let Some(outer) = self.0.take() {
                    drop(SLOT.replace(outer));
                }
            }
        }

        let this = self.project();
        let mut restore = Restore(Some(SLOT.replace(Slot::Open)));
        let poll = this.call.poll(cx);
        let mine = SLOT.replace(restore.0.take().unwrap_or(Slot::Closed));
        drop(restore);
        if let Slot::Taken(pending) = mine {
            *this.pending = Some(pending);
        }
        let output = ready!(poll);
        Poll::Ready((output, this.pending.take()))
    }
}

impl<F> fmt::Debug for Capture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capture")
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(metrics: &Metrics) -> Observed {
        Observed {
            metrics: metrics.clone(),
            status: StatusCode::OK,
            duration: Duration::ZERO,
            attempts: 1,
        }
    }

    #[test]
    fn outside_a_capture_nothing_is_taken() {
        assert!(PendingCall::offer(call(&Metrics::new())).is_some());
    }

    #[tokio::test]
    async fn a_capture_takes_one_call_and_restores_the_enclosing_slot() {
        let metrics = Metrics::new();
        let inner = async {
            let first = PendingCall::offer(call(&metrics)).is_none();
            let second = PendingCall::offer(call(&metrics)).is_none();
            (first, second)
        };
        let ((first, second), pending) = capture(inner).await;
        assert!(first && !second, "only the first call is taken");
        assert!(PendingCall::offer(call(&metrics)).is_some());
        drop(pending);
        // Dropped without a verdict: cancelled.
        assert_eq!(metrics.stats().total_requests, 1);
        assert_eq!(metrics.stats().successes, 0);
    }
}
