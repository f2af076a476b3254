//! A response body that can stop midway and drop its connection.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;

use crate::conn::ConnectionCloser;

/// Yields its chunks in order; with a cut, yields only the first `n` and then drops the
/// connection instead of ending.
#[derive(Debug)]
pub(crate) struct Chunks {
    chunks: std::vec::IntoIter<Bytes>,
    cut: Option<(usize, ConnectionCloser)>,
}

impl Chunks {
    pub(crate) fn new(chunks: Vec<Bytes>) -> Self {
        Chunks {
            chunks: chunks.into_iter(),
            cut: None,
        }
    }

    pub(crate) fn cut_after(chunks: Vec<Bytes>, sent: usize, closer: ConnectionCloser) -> Self {
        Chunks {
            chunks: chunks.into_iter(),
            cut: Some((sent, closer)),
        }
    }
}

impl Stream for Chunks {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some((left, closer)) = &mut this.cut {
            if *left == 0 {
                // hyper flushes what was written before polling the connection task again,
                // which then drops the connection (and this body with it): never ready again.
                closer.close();
                return Poll::Pending;
            }
            *left -= 1;
        }
        Poll::Ready(this.chunks.next().map(Ok))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}
