//! A response body that can pause between chunks, stall once, stop midway and drop its
//! connection, and tally the usage one of its chunks reports when it sends that chunk.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use crate::conn::ConnectionCloser;
use crate::stats::{OpenStream, ReportedUsage, UsageTally};

/// Yields its chunks in order, `interval` apart; with a cut, yields only the first `n` and then
/// drops the connection instead of ending; with a stall, waits once more before chunk `n`.
///
/// The pauses are a tokio timer polled by the connection's task, so a slow stream holds no
/// thread (thousands can be open at once), runs on virtual time under `tokio::time::pause()`,
/// and ends with its connection: a client that goes away mid-pause drops the body, timer and
/// all.
#[derive(Debug)]
pub(crate) struct Chunks {
    chunks: std::vec::IntoIter<Bytes>,
    /// Chunks yielded so far.
    sent: usize,
    cut: Option<(usize, ConnectionCloser)>,
    interval: Duration,
    /// Before yielding chunk `.0`, wait `.1` (after the interval, if any).
    stall: Option<(usize, Duration)>,
    /// Armed after each chunk but the last while `interval` is not zero, and for the stall;
    /// one allocation per stream, reset for every gap.
    pause: Option<Pin<Box<Sleep>>>,
    paused: bool,
    /// Chunk `.0` reports usage `.1`, added to `.2` as it is yielded.
    report: Option<(usize, ReportedUsage, Arc<UsageTally>)>,
    /// Counts the stream as open while the body lives.
    _open: Option<OpenStream>,
}

impl Chunks {
    pub(crate) fn new(chunks: Vec<Bytes>) -> Self {
        Chunks {
            chunks: chunks.into_iter(),
            sent: 0,
            cut: None,
            interval: Duration::ZERO,
            stall: None,
            pause: None,
            paused: false,
            report: None,
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

    /// Wait `pause` once, before chunk `before` (0: before the first); never if there is no
    /// such chunk.
    pub(crate) fn stalled(mut self, before: usize, pause: Duration) -> Self {
        self.stall = Some((before, pause));
        self
    }

    /// Count the stream as open in its gauge until the body is dropped.
    pub(crate) fn counted(mut self, open: OpenStream) -> Self {
        self._open = Some(open);
        self
    }

    /// Add `usage` to `tally` when chunk `at` is yielded, if it ever is.
    pub(crate) fn reporting(
        mut self,
        at: usize,
        usage: ReportedUsage,
        tally: Arc<UsageTally>,
    ) -> Self {
        self.report = Some((at, usage, tally));
        self
    }

    fn arm_pause(&mut self, length: Duration) {
        let deadline = Instant::now() + length;
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
        loop {
            if this.paused
                && let Some(pause) = &mut this.pause
            {
                ready!(pause.as_mut().poll(cx));
                this.paused = false;
            }
            match this.stall {
                Some((before, pause)) if before == this.sent && this.chunks.len() > 0 => {
                    this.stall = None;
                    this.arm_pause(pause);
                }
                _ => break,
            }
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
        if next.is_some() {
            if let Some((at, usage, tally)) = &this.report
                && *at == this.sent
            {
                tally.add(*usage);
            }
            this.sent += 1;
            if !this.interval.is_zero() && this.chunks.len() > 0 {
                this.arm_pause(this.interval);
            }
        }
        Poll::Ready(next.map(Ok))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}
