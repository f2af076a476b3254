//! An event stream's body, watched event by event as it passes.
//!
//! The body is cut into whole events (at blank lines) and each is passed on as one frame,
//! at once: servers send an event per write, so nothing waits in practice. Each event with
//! data is a chunk for the [`Operation`] (the first one's time is the time to first chunk);
//! a chunk with `usage` reports the tokens. With `strip`, a chunk that carries only usage
//! (no choices) is not passed on: the client asked for it, not the caller.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use evolution_token::BoxError;
use http_body::{Body as HttpBody, Frame, SizeHint};
use pin_project_lite::pin_project;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::operation::Operation;
use crate::sse::{MAX_EVENT_BYTES, SseEvent, SseParser};
use crate::{Body, Usage};

pin_project! {
    /// See the [module docs](self).
    pub(crate) struct WatchedEvents {
        #[pin]
        body: Body,
        // Bytes of the event being received.
        partial: BytesMut,
        // How much of `partial` is known to hold no event end.
        scanned: usize,
        // Whole events, to pass on.
        ready: VecDeque<Bytes>,
        strip: bool,
        ended: bool,
        // The last usage a chunk reported, recorded when the stream ends.
        usage: Option<Usage>,
        // Trailers, passed on after the events held before them.
        trailers: Option<Frame<Bytes>>,
        // Reads the data of one whole event at a time; kept for its buffers.
        parser: SseParser,
        operation: Option<Operation>,
    }
}

impl WatchedEvents {
    pub(crate) fn new(body: Body, strip: bool, operation: Operation) -> Self {
        Self {
            body,
            partial: BytesMut::new(),
            scanned: 0,
            ready: VecDeque::new(),
            strip,
            ended: false,
            usage: None,
            trailers: None,
            parser: SseParser::default(),
            operation: Some(operation),
        }
    }
}

impl HttpBody for WatchedEvents {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            if let Some(event) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(event))));
            }
            if let Some(trailers) = this.trailers.take() {
                return Poll::Ready(Some(Ok(trailers)));
            }
            if *this.ended {
                return Poll::Ready(None);
            }
            match this.body.as_mut().poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        // Servers write an event per frame: it is cut from the frame itself,
                        // and only an event split over frames is copied.
                        let mut pending = if this.partial.is_empty() {
                            data
                        } else {
                            this.partial.extend_from_slice(&data);
                            this.partial.split().freeze()
                        };
                        while let Some(end) = event_end(&pending, this.scanned) {
                            let event = pending.split_to(end);
                            *this.scanned = 0;
                            let watch = Watch {
                                strip: *this.strip,
                                usage: this.usage,
                                operation: this.operation,
                                parser: this.parser,
                            };
                            if watch.keep(&event) {
                                this.ready.push_back(event);
                            }
                        }
                        this.partial.extend_from_slice(&pending);
                        if this.partial.len() > MAX_EVENT_BYTES {
                            // Not an event stream after all, or a broken one: passed on
                            // as it comes, unwatched.
                            *this.scanned = 0;
                            this.ready.push_back(std::mem::take(this.partial).freeze());
                        }
                    }
                    Err(trailers) => {
                        // Trailers come last: the bytes held go out before them.
                        if !this.partial.is_empty() {
                            *this.scanned = 0;
                            this.ready.push_back(std::mem::take(this.partial).freeze());
                        }
                        *this.trailers = Some(trailers);
                    }
                },
                Poll::Ready(Some(Err(error))) => {
                    *this.ended = true;
                    if let Some(operation) = this.operation.take() {
                        operation.fail("transport");
                    }
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(None) => {
                    *this.ended = true;
                    let rest = std::mem::take(this.partial).freeze();
                    let watch = Watch {
                        strip: *this.strip,
                        usage: this.usage,
                        operation: this.operation,
                        parser: this.parser,
                    };
                    if !rest.is_empty() && watch.keep(&rest) {
                        this.ready.push_back(rest);
                    }
                    finish(this.operation, *this.usage);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.ready.is_empty() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Where the first whole event of `bytes` ends (after its blank line), searching from
/// `*scanned`; when there is none yet, records where to search from next time.
fn event_end(bytes: &[u8], scanned: &mut usize) -> Option<usize> {
    // A blank line is a line end right after another: `\n\n`, `\r\r`, `\r\n\r\n`, or a mix.
    let mut at = (*scanned).min(bytes.len());
    loop {
        let Some(found) = memchr::memchr2(b'\n', b'\r', &bytes[at..]) else {
            *scanned = bytes.len();
            return None;
        };
        let end = at + found;
        // Until the byte after a `\r` has come, the line end's length is not known.
        let mut wait = || {
            *scanned = end;
            None
        };
        let next = match (bytes[end], bytes.get(end + 1)) {
            (b'\r', Some(b'\n')) => end + 2,
            (b'\r', None) => return wait(),
            _ => end + 1,
        };
        match (bytes.get(next), bytes.get(next + 1)) {
            (Some(b'\n'), _) => return Some(next + 1),
            (Some(b'\r'), Some(b'\n')) => return Some(next + 2),
            (Some(b'\r'), Some(_)) => return Some(next + 1),
            (Some(b'\r'), None) | (None, _) => return wait(),
            (Some(_), _) => at = next,
        }
    }
}

/// Ends the call's record: its usage, counted once, then the verdict.
fn finish(operation: &mut Option<Operation>, usage: Option<Usage>) {
    if let Some(mut operation) = operation.take() {
        if let Some(usage) = &usage {
            operation.usage(usage);
        }
        operation.finish(None);
    }
}

/// What one event is looked at with.
struct Watch<'a> {
    strip: bool,
    usage: &'a mut Option<Usage>,
    operation: &'a mut Option<Operation>,
    parser: &'a mut SseParser,
}

impl Watch<'_> {
    /// Watches one whole event: whether to pass it on.
    fn keep(self, event: &[u8]) -> bool {
        let parser = self.parser;
        parser.feed(event);
        // A whole event ends in a blank line; the body's last bytes may not.
        let data = match parser.next_event().or_else(|| parser.finish()) {
            Some(SseEvent::Data { data, .. }) => data,
            Some(SseEvent::Done) => {
                // The stream is complete: a reader may stop here and drop the body.
                finish(self.operation, *self.usage);
                return true;
            }
            // A comment, a keep-alive: passed on as they are.
            None => return true,
        };
        let Some(operation) = self.operation.as_mut() else {
            return true;
        };
        if !operation.has_chunk() {
            // The first chunk names the model (each does): read it once, not per chunk.
            #[derive(Deserialize)]
            struct Named {
                #[serde(default)]
                model: String,
            }
            if let Ok(Named { model }) = serde_json::from_str(&data) {
                operation.response_model(&model);
            }
        }
        operation.chunk();
        // A chunk never has an unescaped `"usage"` but as its key: most chunks are passed
        // on without being parsed.
        if !data.contains("\"usage\"") {
            return true;
        }
        #[derive(Deserialize)]
        struct UsageChunk {
            #[serde(default)]
            choices: Vec<IgnoredAny>,
            #[serde(default, deserialize_with = "crate::chat::lenient_usage")]
            usage: Option<Usage>,
        }
        match serde_json::from_str::<UsageChunk>(&data) {
            Ok(UsageChunk {
                choices,
                usage: Some(usage),
            }) => {
                // A server may report running totals on every chunk: the last one counts.
                *self.usage = Some(usage);
                !(self.strip && choices.is_empty())
            }
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(stream: &[u8]) -> Vec<&[u8]> {
        let mut rest = stream;
        let mut found = Vec::new();
        let mut scanned = 0;
        while let Some(end) = event_end(rest, &mut scanned) {
            found.push(&rest[..end]);
            rest = &rest[end..];
            scanned = 0;
        }
        found
    }

    #[test]
    fn events_end_at_blank_lines_of_any_line_ending() {
        assert_eq!(
            events(b"data: a\n\ndata: b\r\n\r\ndata: c\r\rdata: d\n\ndata: e"),
            [
                &b"data: a\n\n"[..],
                b"data: b\r\n\r\n",
                b"data: c\r\r",
                b"data: d\n\n"
            ]
        );
        assert_eq!(
            events(b"event: x\ndata: a\ndata: b\n\n: ping\n\n"),
            [&b"event: x\ndata: a\ndata: b\n\n"[..], b": ping\n\n"]
        );
        // Not yet whole: a `\r` whose `\n` may follow.
        assert!(events(b"data: a\r\n\r").is_empty());
        assert!(events(b"data: a\n").is_empty());
    }

    #[test]
    fn an_event_split_over_reads_is_found_once_whole() {
        let stream = b"data: {\"a\":1}\r\n\r\ndata: [DONE]\n\n";
        for cut in 0..stream.len() {
            let mut partial = BytesMut::new();
            let mut scanned = 0;
            let mut found = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                partial.extend_from_slice(part);
                while let Some(end) = event_end(&partial, &mut scanned) {
                    found.push(partial.split_to(end).freeze());
                    scanned = 0;
                }
            }
            assert_eq!(
                found,
                [
                    Bytes::from_static(b"data: {\"a\":1}\r\n\r\n"),
                    Bytes::from_static(b"data: [DONE]\n\n")
                ],
                "cut at {cut}"
            );
        }
    }
}
