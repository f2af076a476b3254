//! [`ChatStream`]: the chunks of a streamed completion.

mod error;

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use evolution_metrics::{Metrics, PendingCall};
use futures_util::Stream;
use http_body::Body as _;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::sse::{MAX_EVENT_BYTES, SseEvent, SseParser};
use crate::{Body, ChatChunk, Error, Result};

pub use self::error::STREAM_ERROR_STATUS;

pin_project! {
    /// A stream of [`ChatChunk`]s, from [`EvolutionInference::stream`](crate::EvolutionInference::stream).
    ///
    /// Ends after `data: [DONE]`. Anything else ends it with one error, then the end; it
    /// never hangs:
    ///
    /// - an error the server sends inside the stream (`data: {"error": {...}}`, or an
    ///   `event: error`): [`Error::Api`], its status the error's `code` when that is an HTTP
    ///   error status, else [`STREAM_ERROR_STATUS`], its message the server's;
    /// - a connection that breaks: [`Error::Transport`];
    /// - a stream that ends without `[DONE]`, a chunk that is not a JSON chunk, or an event
    ///   larger than [`MAX_EVENT_BYTES`]: [`Error::Decode`];
    /// - no data for the request timeout: [`Error::Timeout`].
    ///
    /// The call is counted in the client's metrics when the stream ends: `ok` after
    /// `[DONE]`, `body_error` after an error, `cancelled` if the stream is dropped before
    /// its end.
    pub struct ChatStream {
        #[pin]
        body: Body,
        parser: SseParser,
        idle: Pin<Box<Sleep>>,
        idle_timeout: Duration,
        state: State,
        // The metrics verdict, given when the stream ends.
        call: Option<PendingCall>,
        // When the call started and where to record its time to first chunk, until then.
        first_chunk: Option<(Instant, Metrics)>,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Streaming,
    /// The body ended, its last event was a chunk and was yielded: the cut comes next.
    Cut,
    Ended,
}

impl ChatStream {
    pub(crate) fn new(
        body: Body,
        idle_timeout: Duration,
        call: Option<PendingCall>,
        first_chunk: Option<(Instant, Metrics)>,
    ) -> Self {
        Self {
            body,
            parser: SseParser::default(),
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            idle_timeout,
            state: State::Streaming,
            call,
            first_chunk,
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

fn cut() -> Error {
    Error::Decode("the stream ended before `data: [DONE]`: the connection was cut".into())
}

/// What the stream yields for one event; `at_end`: the body has ended after it.
fn chunk_of(event: Option<&str>, data: &str, at_end: bool) -> Result<ChatChunk> {
    if let Some(error) = error::stream_error(event, data) {
        return Err(error);
    }
    serde_json::from_str(data).map_err(|error| {
        if at_end {
            // The last line was cut short, most likely.
            cut()
        } else {
            Error::Decode(format!(
                "a stream chunk is not valid JSON of the expected shape ({error})"
            ))
        }
    })
}

impl Stream for ChatStream {
    type Item = Result<ChatChunk>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        // Ends the stream: the verdict for the metrics, and the last item.
        let mut end = |state: &mut State, item: Option<Result<ChatChunk>>| {
            *state = State::Ended;
            if let Some(call) = this.call.take() {
                match item {
                    None => call.ok(),
                    Some(_) => call.body_error(),
                }
            }
            Poll::Ready(item)
        };
        loop {
            match *this.state {
                State::Streaming => {}
                State::Cut => return end(this.state, Some(Err(cut()))),
                State::Ended => return Poll::Ready(None),
            }
            match this.parser.next_event() {
                Some(SseEvent::Done) => return end(this.state, None),
                Some(SseEvent::Data { event, data }) => {
                    return match chunk_of(event.as_deref(), &data, false) {
                        Ok(chunk) => {
                            if let Some((started, metrics)) = this.first_chunk.take() {
                                metrics.record_time_to_first_chunk(started.elapsed());
                            }
                            Poll::Ready(Some(Ok(chunk)))
                        }
                        Err(error) => end(this.state, Some(Err(error))),
                    };
                }
                None => {}
            }
            if this.parser.pending() > MAX_EVENT_BYTES {
                return end(
                    this.state,
                    Some(Err(Error::Decode(format!(
                        "a stream event is larger than {MAX_EVENT_BYTES} bytes"
                    )))),
                );
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
                    return end(this.state, Some(Err(Error::Transport(error))));
                }
                Poll::Ready(None) => {
                    return match this.parser.finish() {
                        Some(SseEvent::Done) => end(this.state, None),
                        Some(SseEvent::Data { event, data }) => {
                            match chunk_of(event.as_deref(), &data, true) {
                                Ok(chunk) => {
                                    *this.state = State::Cut;
                                    Poll::Ready(Some(Ok(chunk)))
                                }
                                Err(error) => end(this.state, Some(Err(error))),
                            }
                        }
                        _ => end(this.state, Some(Err(cut()))),
                    };
                }
                Poll::Pending => {
                    ready!(this.idle.as_mut().poll(cx));
                    return end(this.state, Some(Err(Error::Timeout(*this.idle_timeout))));
                }
            }
        }
    }
}

impl std::fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStream")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}
