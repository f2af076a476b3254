//! An event stream's body that is read to its end after `data: [DONE]`.
//!
//! async-openai stops reading a stream at its `[DONE]` event and drops the body, one poll
//! short of its end. The stack would then count a complete answer as `cancelled` (in
//! [`stats`](crate::EvolutionInference::stats) and the metrics), and hyper would close a
//! connection it could have reused. So a body dropped right after `[DONE]` is read to its
//! end in a task of its own: what is left is the end of the chunked encoding, or a few
//! bytes; a body that keeps sending is cut off after [`DRAIN_LIMIT`] bytes or the given
//! time. A body dropped before `[DONE]` is dropped, and counted `cancelled`, as before.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use evolution_token::BoxError;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

use crate::Body;

/// The most read from a body after its `[DONE]` event.
const DRAIN_LIMIT: usize = 64 * 1024;

/// The last event of an OpenAI stream, as the data ends with it (blank line trimmed).
const DONE: &[u8] = b"data: [DONE]";

/// A `text/event-stream` body remembering whether its data so far ends with `[DONE]`.
pub(super) struct DoneBody {
    inner: Option<Body>,
    /// The last bytes of the data, enough for [`DONE`] and its blank line.
    tail: Tail,
    ended: bool,
    /// How long the read after `[DONE]` may take.
    drain_for: Duration,
}

impl DoneBody {
    pub(super) fn new(inner: Body, drain_for: Duration) -> Self {
        Self {
            inner: Some(inner),
            tail: Tail::default(),
            ended: false,
            drain_for,
        }
    }
}

impl http_body::Body for DoneBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // `Body` is boxed, hence `Unpin`, and so is this.
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = std::task::ready!(Pin::new(inner).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.tail.push(data.chunk());
                }
            }
            Some(Err(_)) | None => this.ended = true,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(|inner| inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |inner| inner.size_hint())
    }
}

impl Drop for DoneBody {
    fn drop(&mut self) {
        if self.ended || !self.tail.ends_with_done() {
            return;
        }
        let (Some(body), Ok(runtime)) = (self.inner.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        runtime.spawn(tokio::time::timeout(self.drain_for, drain(body)));
    }
}

async fn drain(mut body: Body) {
    let mut read = 0;
    while let Some(Ok(frame)) = body.frame().await {
        read += frame.data_ref().map_or(0, Buf::remaining);
        if read > DRAIN_LIMIT {
            return;
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
    use super::*;

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
