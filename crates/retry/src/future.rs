//! Future types

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;

pub use tower::retry::future::ResponseFuture;

pin_project! {
    /// The wait before a retry: the [`Policy::Future`](tower::retry::Policy::Future) of
    /// [`RetryPolicy`](crate::RetryPolicy). A tokio sleep, so paused time controls it.
    #[derive(Debug)]
    pub struct Delay {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State {
        // No wait: ready at once rather than on the timer's next tick.
        Now,
        Sleeping { #[pin] sleep: Sleep },
    }
}

impl Delay {
    pub(crate) fn new(delay: Duration) -> Self {
        let state = if delay.is_zero() {
            State::Now
        } else {
            State::Sleeping {
                sleep: tokio::time::sleep(delay),
            }
        };
        Self { state }
    }
}

impl Future for Delay {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.project().state.project() {
            StateProj::Now => Poll::Ready(()),
            StateProj::Sleeping { sleep } => sleep.poll(cx),
        }
    }
}
