//! [`ChatStream`]: the chunks of a streamed completion.

mod error;
mod timeouts;

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use evolution_metrics::PendingCall;
use futures_util::Stream;
use http_body::Body as _;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::operation::Operation;
use crate::sse::{MAX_EVENT_BYTES, SseEvent, SseParser};
use crate::{Body, ChatChunk, Error, Result, Usage};

pub use self::error::STREAM_ERROR_STATUS;
pub(crate) use self::timeouts::StreamLimits;
pub use self::timeouts::StreamTimeout;

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
    /// - a limit that runs out: [`Error::StreamTimeout`], saying which ([`StreamTimeout`]):
    ///   no chunk within `first_chunk_timeout` of the head, nothing for `stream_idle_timeout`
    ///   after a chunk, or no end within `stream_timeout` of the call's start.
    ///
    /// The client asks the server for the stream's token usage
    /// (`stream_options.include_usage`); the chunk that carries only the usage is not
    /// yielded: [`usage`](Self::usage) gives it once read, and the client's metrics count it.
    ///
    /// The call is counted in the client's metrics when the stream ends: `ok` after
    /// `[DONE]`, `body_error` after an error, `cancelled` if the stream is dropped before
    /// its end.
    pub struct ChatStream {
        #[pin]
        body: Body,
        parser: SseParser,
        // Before the first chunk, the first-chunk deadline; then the idle one, pushed back by
        // each frame.
        timer: Pin<Box<Sleep>>,
        waiting_first: bool,
        limits: StreamLimits,
        // The whole stream's deadline, if any.
        total: Option<Pin<Box<Sleep>>>,
        state: State,
        // The first item, read before `stream` returned the stream.
        peeked: Option<Result<ChatChunk>>,
        usage: Option<Usage>,
        // The metrics verdict, given when the stream ends.
        call: Option<PendingCall>,
        // The call's span and GenAI record, finished when the stream ends.
        operation: Option<Operation>,
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
    /// A stream over `body`, whose head has just arrived; the call started at `started`.
    pub(crate) fn new(
        body: Body,
        limits: StreamLimits,
        started: Instant,
        call: Option<PendingCall>,
        operation: Option<Operation>,
    ) -> Self {
        Self {
            body,
            parser: SseParser::default(),
            timer: Box::pin(tokio::time::sleep(limits.first_chunk)),
            waiting_first: true,
            limits,
            total: limits
                .total
                .map(|total| Box::pin(tokio::time::sleep_until(started + total))),
            state: State::Streaming,
            peeked: None,
            usage: None,
            call,
            operation,
        }
    }

    /// Reads the first item and keeps it for the caller; `Err` if no chunk came within
    /// `first_chunk_timeout`: the stream has ended then, and a new request may be sent.
    pub(crate) async fn first(&mut self) -> std::result::Result<(), StreamTimeout> {
        use futures_util::StreamExt;
        match self.next().await {
            Some(Err(Error::StreamTimeout(timeout @ StreamTimeout::FirstChunk(_)))) => Err(timeout),
            item => {
                self.peeked = item;
                Ok(())
            }
        }
    }

    /// The call's record and span, after a first-chunk timeout: for the request sent
    /// again, or to finish.
    pub(crate) fn take_operation(&mut self) -> Option<Operation> {
        self.operation.take()
    }

    /// The call's metrics verdict, after a first-chunk timeout.
    pub(crate) fn take_call(&mut self) -> Option<PendingCall> {
        self.call.take()
    }

    /// The token usage the server reported for this stream: `None` until its usage chunk
    /// has been read (it comes last, just before the end), and for good if the server
    /// reports none.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
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

/// Ends the stream: gives the verdict for the metrics and the span, and the last item.
fn end(
    state: &mut State,
    call: &mut Option<PendingCall>,
    operation: &mut Option<Operation>,
    usage: Option<Usage>,
    item: Option<Result<ChatChunk>>,
) -> Poll<Option<Result<ChatChunk>>> {
    *state = State::Ended;
    let error = match &item {
        Some(Err(error)) => Some(error),
        _ => None,
    };
    if let Some(call) = call.take() {
        match error {
            None => call.ok(),
            Some(_) => call.body_error(),
        }
    }
    if let Some(mut operation) = operation.take() {
        // Counted once, at the end: a server that reports usage on every chunk reports
        // running totals, the last of which is the stream's.
        if let Some(usage) = &usage {
            operation.usage(usage);
        }
        operation.finish(error);
    }
    Poll::Ready(item)
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
        if let Some(item) = this.peeked.take() {
            return Poll::Ready(Some(item));
        }
        // Ends the stream: the verdict for the metrics and the span, and the last item.
        macro_rules! end {
            ($item:expr) => {
                end(this.state, this.call, this.operation, *this.usage, $item)
            };
        }
        loop {
            match *this.state {
                State::Streaming => {}
                State::Cut => return end!(Some(Err(cut()))),
                State::Ended => return Poll::Ready(None),
            }
            match this.parser.next_event() {
                Some(SseEvent::Done) => return end!(None),
                Some(SseEvent::Data { event, data }) => {
                    let chunk = match chunk_of(event.as_deref(), &data, false) {
                        Ok(chunk) => chunk,
                        Err(error) => return end!(Some(Err(error))),
                    };
                    if *this.waiting_first {
                        // From now on the idle limit applies, from this chunk.
                        *this.waiting_first = false;
                        this.timer.as_mut().reset(Instant::now() + this.limits.idle);
                    }
                    if let Some(operation) = this.operation.as_mut() {
                        operation.response_model(&chunk.model);
                        operation.chunk();
                    }
                    if let Some(usage) = chunk.usage {
                        *this.usage = Some(usage);
                        if chunk.choices.is_empty() {
                            // The usage-only chunk the client asked for: nothing to yield.
                            continue;
                        }
                    }
                    return Poll::Ready(Some(Ok(chunk)));
                }
                None => {}
            }
            if this.parser.pending() > MAX_EVENT_BYTES {
                return end!(Some(Err(Error::Decode(format!(
                    "a stream event is larger than {MAX_EVENT_BYTES} bytes"
                )))));
            }
            if let Some(total) = this.total.as_mut()
                && total.as_mut().poll(cx).is_ready()
            {
                let limit = this.limits.total.unwrap_or_default();
                return end!(Some(Err(Error::StreamTimeout(StreamTimeout::Total(limit)))));
            }
            match this.body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if !*this.waiting_first {
                        this.timer.as_mut().reset(Instant::now() + this.limits.idle);
                    }
                    if let Ok(data) = frame.into_data() {
                        this.parser.feed(&data);
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    return end!(Some(Err(Error::Transport(error))));
                }
                Poll::Ready(None) => {
                    return match this.parser.finish() {
                        Some(SseEvent::Done) => end!(None),
                        Some(SseEvent::Data { event, data }) => {
                            match chunk_of(event.as_deref(), &data, true) {
                                Ok(chunk) => {
                                    if let Some(operation) = this.operation.as_mut() {
                                        operation.response_model(&chunk.model);
                                        operation.chunk();
                                    }
                                    if let Some(usage) = chunk.usage {
                                        *this.usage = Some(usage);
                                    }
                                    *this.state = State::Cut;
                                    if chunk.usage.is_some() && chunk.choices.is_empty() {
                                        // Nothing to yield: the cut comes next.
                                        return end!(Some(Err(cut())));
                                    }
                                    Poll::Ready(Some(Ok(chunk)))
                                }
                                Err(error) => end!(Some(Err(error))),
                            }
                        }
                        _ => end!(Some(Err(cut()))),
                    };
                }
                Poll::Pending => {
                    ready!(this.timer.as_mut().poll(cx));
                    if *this.waiting_first {
                        // Nothing reached the caller: `stream` may send the request again,
                        // as the same logical call, with the same record and span; it
                        // takes them (`take_call`, `take_operation`) and decides.
                        *this.state = State::Ended;
                        let timeout = StreamTimeout::FirstChunk(this.limits.first_chunk);
                        return Poll::Ready(Some(Err(Error::StreamTimeout(timeout))));
                    }
                    let timeout = StreamTimeout::Idle(this.limits.idle);
                    return end!(Some(Err(Error::StreamTimeout(timeout))));
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use evolution_metrics::Metrics;
    use futures_util::StreamExt;
    use http_body_util::{BodyExt, Full};

    use super::*;
    use crate::operation::Kind;

    fn chunk(text: &str, completion_tokens: u64) -> String {
        format!(
            "data: {{\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}}}}],\"usage\":{{\"prompt_tokens\":5,\"completion_tokens\":{completion_tokens},\"total_tokens\":{}}}}}\n\n",
            5 + completion_tokens
        )
    }

    #[tokio::test]
    async fn running_totals_on_every_chunk_are_counted_once() {
        let metrics = Metrics::new();
        let events = format!(
            "{}{}{}data: [DONE]\n\n",
            chunk("a", 1),
            chunk("b", 2),
            chunk("c", 3)
        );
        let body = Full::new(Bytes::from(events))
            .map_err(|never| match never {})
            .boxed();
        let uri = http::Uri::from_static("http://api/v1/chat/completions");
        let operation = Operation::start(&metrics, Kind::Chat, "m", &uri);
        let limits = StreamLimits {
            first_chunk: Duration::from_secs(10),
            idle: Duration::from_secs(10),
            total: None,
        };
        let mut stream = ChatStream::new(body, limits, Instant::now(), None, Some(operation));
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            text.push_str(chunk.unwrap().text());
        }
        assert_eq!(text, "abc", "chunks with choices are yielded, usage or not");
        assert_eq!(stream.usage().map(|u| u.completion_tokens), Some(3));
        let stats = metrics.stats();
        assert_eq!((stats.input_tokens, stats.output_tokens), (5, 3));
    }
}
