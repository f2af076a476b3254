//! A response body that can pause between chunks, and stop midway and drop its connection.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use crate::conn::ConnectionCloser;
use crate::stats::OpenStream;

/// Yields its chunks in order, `interval` apart; with a cut, yields only the first `n` and then
/// drops the connection instead of ending.
///
/// The pause is a tokio timer polled by the connection's task, so a slow stream holds no thread
/// (thousands can be open at once) and runs on virtual time under `tokio::time::pause()`.
#[derive(Debug)]
pub(crate) struct Chunks {
    chunks: std::vec::IntoIter<Bytes>,
    cut: Option<(usize, ConnectionCloser)>,
    interval: Duration,
    /// Armed after each chunk but the last while `interval` is not zero; one allocation per
    /// stream, reset for every gap.
    pause: Option<Pin<Box<Sleep>>>,
    paused: bool,
    /// Counts the stream as open while the body lives.
    _open: Option<OpenStream>,
}

impl Chunks {
    pub(crate) fn new(chunks: Vec<Bytes>) -> Self {
        Chunks {
            chunks: chunks.into_iter(),
            cut: None,
            interval: Duration::ZERO,
            pause: None,
            paused: false,
            _open: None,
        }
    }

    pub(crate) fn cut_after(chunks: Vec<Bytes>, sent: usize, closer: ConnectionCloser) -> Self {
        Chunks {
            cut: Some((sent, closer)),
            ..Chunks::new(chunks)
        }
    }

    /// Wait `interval` between two chunks (not before the first nor after the last).
    pub(crate) fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Count the stream as open in its gauge until the body is dropped.
    pub(crate) fn counted(mut self, open: OpenStream) -> Self {
        self._open = Some(open);
        self
    }

    fn arm_pause(&mut self) {
        let deadline = Instant::now() + self.interval;
        match &mut self.pause {
            Some(pause) => pause.as_mut().reset(deadline),
            None => self.pause = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
        self.paused = true;
    }
}

impl Stream for Chunks {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.paused
            && let Some(pause) = &mut this.pause
        {
            ready!(pause.as_mut().poll(cx));
            this.paused = false;
        }
        if let Some((left, closer)) = &mut this.cut {
            if *left == 0 {
                // hyper flushes what was written before polling the connection task again,
                // which then drops the connection (and this body with it): never ready again.
                closer.close();
                return Poll::Pending;
            }
            *left -= 1;
        }
        let next = this.chunks.next();
        if next.is_some() && !this.interval.is_zero() && this.chunks.len() > 0 {
            this.arm_pause();
        }
        Poll::Ready(next.map(Ok))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}
