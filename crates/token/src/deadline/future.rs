//! Future types

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::{Sleep, sleep_until};
use tower::timeout::error::Elapsed;

use super::Until;
use crate::BoxError;

pin_project! {
    /// Response future of [`Deadline`](super::Deadline).
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        response: F,
        #[pin]
        sleep: Sleep,
        until: Until,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(response: F, until: Until) -> Self {
        Self {
            response,
            sleep: sleep_until(until.at),
            until,
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The inner future first, inside the scope: once the time is up, a layer below that
        // can say what it was waiting for ends the call with its own error.
        let mut response = this.response;
        if let Poll::Ready(result) = this.until.scope(|| response.as_mut().poll(cx)) {
            return Poll::Ready(result.map_err(Into::into));
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed::new().into())),
            Poll::Pending => Poll::Pending,
        }
    }
}
