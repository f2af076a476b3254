//! [`ChatStream`]: the chunks of a streamed completion.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::Stream;
use http_body::Body as _;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::sse::{MAX_EVENT_BYTES, SseEvent, SseParser};
use crate::{Body, ChatChunk, Error, Result};

pin_project! {
    /// A stream of [`ChatChunk`]s, from [`EvolutionInference::stream`](crate::EvolutionInference::stream).
    ///
    /// Ends after `data: [DONE]`. A connection that breaks, a stream that ends
    /// without `[DONE]`, or no data for the request timeout yields one error and then
    /// the end: it never hangs.
    pub struct ChatStream {
        #[pin]
        body: Body,
        parser: SseParser,
        idle: Pin<Box<Sleep>>,
        idle_timeout: Duration,
        done: bool,
    }
}

impl ChatStream {
    pub(crate) fn new(body: Body, idle_timeout: Duration) -> Self {
        Self {
            body,
            parser: SseParser::default(),
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            idle_timeout,
            done: false,
        }
    }

    /// Collects the first choice's text until the end of the stream.
    ///
    /// # Errors
    ///
    /// The first error the stream yields.
    pub async fn collect_text(self) -> Result<String> {
        use futures_util::TryStreamExt;
        self.try_fold(String::new(), |mut text, chunk| async move {
            text.push_str(chunk.text());
            Ok(text)
        })
        .await
    }
}

impl Stream for ChatStream {
    type Item = Result<ChatChunk>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            if *this.done {
                return Poll::Ready(None);
            }
            match this.parser.next_event() {
                Some(SseEvent::Done) => {
                    *this.done = true;
                    return Poll::Ready(None);
                }
                Some(SseEvent::Data(data)) => {
                    return Poll::Ready(Some(serde_json::from_str(&data).map_err(|error| {
                        Error::Decode(format!(
                            "a stream chunk is not valid JSON of the expected shape ({error})"
                        ))
                    })));
                }
                None => {}
            }
            if this.parser.pending() > MAX_EVENT_BYTES {
                *this.done = true;
                return Poll::Ready(Some(Err(Error::Decode(format!(
                    "a stream event is larger than {MAX_EVENT_BYTES} bytes"
                )))));
            }
            match this.body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    this.idle
                        .as_mut()
                        .reset(Instant::now() + *this.idle_timeout);
                    if let Ok(data) = frame.into_data() {
                        this.parser.feed(&data);
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    *this.done = true;
                    return Poll::Ready(Some(Err(Error::Transport(error))));
                }
                Poll::Ready(None) => {
                    *this.done = true;
                    return Poll::Ready(match this.parser.finish() {
                        Some(SseEvent::Done) => None,
                        _ => Some(Err(Error::Decode(
                            "the stream ended before `data: [DONE]`: the connection was cut".into(),
                        ))),
                    });
                }
                Poll::Pending => {
                    ready!(this.idle.as_mut().poll(cx));
                    *this.done = true;
                    return Poll::Ready(Some(Err(Error::Timeout(*this.idle_timeout))));
                }
            }
        }
    }
}

impl std::fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStream")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
