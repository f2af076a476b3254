//! The body async-openai reads: a limit on silence, and a stream's `[DONE]` handed over
//! once the body has ended.
//!
//! - async-openai has no limit of its own on a body that stops sending: a stalled stream
//!   would wait forever. A body silent for its `read_timeout` fails with
//!   [`Error::Timeout`], as the rig transport's does.
//! - async-openai stops reading a stream at its `[DONE]` event and drops the body, one
//!   poll short of its end. The stack would then count a complete answer as `cancelled`
//!   (in [`stats`](crate::EvolutionInference::stats) and the metrics), and hyper would
//!   close a connection it could have reused. So the frame that ends with `[DONE]` is held
//!   back until the body has ended (what is left is the end of the chunked encoding): by
//!   the time async-openai sees `[DONE]`, the call is counted and the connection free. A
//!   server that does not end the body within [`HOLD`] gets the frame released anyway
//!   (and the call counted `cancelled` when async-openai drops it).
//!
//! One timer serves both, reset on each frame.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use evolution_token::BoxError;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::{Body, Error};

/// How long the `[DONE]` frame waits for the body's end.
const HOLD: Duration = Duration::from_secs(1);

/// The last event of an OpenAI stream, as the data ends with it (blank line trimmed).
const DONE: &[u8] = b"data: [DONE]";

type Polled = Option<Result<Frame<Bytes>, BoxError>>;

/// A response body with a limit on silence; an event stream's `[DONE]` frame is held back
/// until the body's end.
pub(super) struct ReadBody {
    inner: Body,
    read_timeout: Duration,
    /// Runs out `read_timeout` after the last frame, or [`HOLD`] after `[DONE]`.
    timer: Pin<Box<Sleep>>,
    /// The last bytes of an event stream's data (`None` for other bodies).
    tail: Option<Tail>,
    /// The `[DONE]` frame.
    held: Option<Frame<Bytes>>,
    /// What the inner body answered after the held frame, to hand over next.
    after: Option<Polled>,
    ended: bool,
}

impl ReadBody {
    /// `events`: a `text/event-stream` body, whose `[DONE]` is held back.
    pub(super) fn new(inner: Body, read_timeout: Duration, events: bool) -> Self {
        Self {
            inner,
            read_timeout,
            timer: Box::pin(tokio::time::sleep(read_timeout)),
            tail: events.then(Tail::default),
            held: None,
            after: None,
            ended: false,
        }
    }

    fn wait(&mut self, limit: Duration) {
        self.timer.as_mut().reset(Instant::now() + limit);
    }
}

impl http_body::Body for ReadBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Polled> {
        // `Body` is boxed and the timer too, so this is `Unpin`.
        let this = self.get_mut();
        if let Some(after) = this.after.take() {
            return Poll::Ready(after);
        }
        if this.ended {
            return Poll::Ready(None);
        }
        loop {
            let Poll::Ready(polled) = Pin::new(&mut this.inner).poll_frame(cx) else {
                ready!(this.timer.as_mut().poll(cx));
                if let Some(done) = this.held.take() {
                    this.wait(this.read_timeout);
                    return Poll::Ready(Some(Ok(done)));
                }
                this.ended = true;
                return Poll::Ready(Some(Err(Error::Timeout(this.read_timeout).into())));
            };
            this.ended = !matches!(polled, Some(Ok(_)));
            this.wait(this.read_timeout);
            if let (Some(Ok(frame)), Some(tail)) = (&polled, &mut this.tail)
                && let Some(data) = frame.data_ref()
            {
                tail.push(data.chunk());
            }
            if let Some(done) = this.held.take() {
                this.after = Some(polled);
                return Poll::Ready(Some(Ok(done)));
            }
            match polled {
                Some(Ok(frame)) if this.tail.as_ref().is_some_and(Tail::ends_with_done) => {
                    this.held = Some(frame);
                    this.wait(HOLD);
                }
                polled => return Poll::Ready(polled),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none()
            && match &self.after {
                Some(after) => after.is_none(),
                None => self.ended || self.inner.is_end_stream(),
            }
    }

    fn size_hint(&self) -> SizeHint {
        if self.held.is_some() || self.after.is_some() {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

/// The last [`Tail::LEN`] bytes pushed.
#[derive(Default)]
struct Tail {
    bytes: [u8; Tail::LEN],
    len: usize,
}

impl Tail {
    const LEN: usize = 32;

    fn push(&mut self, data: &[u8]) {
        if data.len() >= Self::LEN {
            self.bytes.copy_from_slice(&data[data.len() - Self::LEN..]);
            self.len = Self::LEN;
            return;
        }
        let keep = (Self::LEN - data.len()).min(self.len);
        self.bytes.copy_within(self.len - keep..self.len, 0);
        self.bytes[keep..keep + data.len()].copy_from_slice(data);
        self.len = keep + data.len();
    }

    fn ends_with_done(&self) -> bool {
        self.bytes[..self.len].trim_ascii_end().ends_with(DONE)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;
    use http_body_util::{BodyExt, StreamBody};
    use tokio::sync::mpsc;

    use super::*;

    /// An event stream whose frames are sent on the channel; it ends when the sender is
    /// dropped.
    fn body() -> (mpsc::UnboundedSender<&'static str>, ReadBody) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let frames = futures_util::stream::unfold(receiver, |mut receiver| async move {
            let data = receiver.recv().await?;
            Some((Ok::<_, BoxError>(Frame::data(Bytes::from(data))), receiver))
        });
        let body = ReadBody::new(
            StreamBody::new(frames).boxed(),
            Duration::from_secs(60),
            true,
        );
        (sender, body)
    }

    fn data(polled: Option<Polled>) -> Option<Option<Bytes>> {
        polled.map(|polled| polled.map(|frame| frame.unwrap().into_data().unwrap()))
    }

    #[tokio::test]
    async fn done_is_handed_over_once_the_body_has_ended() {
        let (sender, mut body) = body();
        sender.send("data: {\"a\":1}\n\n").unwrap();
        sender.send("data: [DONE]\n\n").unwrap();
        let first = data(body.frame().now_or_never());
        assert_eq!(first, Some(Some(Bytes::from("data: {\"a\":1}\n\n"))));
        // `[DONE]` arrived, but the body has not ended: nothing yet.
        assert_eq!(data(body.frame().now_or_never()), None);
        drop(sender);
        let done = data(body.frame().now_or_never());
        assert_eq!(done, Some(Some(Bytes::from("data: [DONE]\n\n"))));
        assert!(http_body::Body::is_end_stream(&body));
        assert_eq!(data(body.frame().now_or_never()), Some(None));
    }

    #[tokio::test(start_paused = true)]
    async fn done_is_released_if_the_body_does_not_end() {
        let (sender, mut body) = body();
        sender.send("data: [DONE]\n\n").unwrap();
        let done = tokio::time::timeout(HOLD * 2, body.frame()).await.unwrap();
        assert_eq!(
            data(Some(done)),
            Some(Some(Bytes::from("data: [DONE]\n\n")))
        );
        // Data after `[DONE]` is passed on as it comes.
        sender.send("data: late\n\n").unwrap();
        assert_eq!(
            data(body.frame().now_or_never()),
            Some(Some(Bytes::from("data: late\n\n")))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn silence_longer_than_the_read_timeout_fails_the_body() {
        let (sender, mut body) = body();
        sender.send("data: {\"a\":1}\n\n").unwrap();
        body.frame().await.unwrap().unwrap();
        let started = Instant::now();
        let error = body.frame().await.unwrap().unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(60));
        assert!(matches!(
            error.downcast_ref::<Error>(),
            Some(Error::Timeout(limit)) if *limit == Duration::from_secs(60)
        ));
        assert!(body.frame().await.is_none(), "the body ends with its error");
    }

    fn tail(pieces: &[&str]) -> Tail {
        let mut tail = Tail::default();
        for piece in pieces {
            tail.push(piece.as_bytes());
        }
        tail
    }

    #[test]
    fn done_is_found_across_frames_and_line_ends() {
        assert!(tail(&["data: {\"a\":1}\n\ndata: [DONE]\n\n"]).ends_with_done());
        assert!(tail(&["data: {\"a\":1}\r\n\r\ndata: [DO", "NE]\r\n", "\r\n"]).ends_with_done());
        assert!(tail(&["x".repeat(100).as_str(), "data: [DONE]", "\n\n"]).ends_with_done());
    }

    #[test]
    fn data_after_done_or_no_done_is_not_done() {
        assert!(!tail(&[]).ends_with_done());
        assert!(!tail(&["data: {\"a\":1}\n\n"]).ends_with_done());
        assert!(!tail(&["data: [DONE]\n\n", "data: {\"a\":1}\n\n"]).ends_with_done());
    }
}
