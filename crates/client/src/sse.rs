//! An incremental Server-Sent Events parser for completion streams.
//!
//! It follows the WHATWG rules for reading an event stream
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation>):
//! a byte order mark at the start is skipped; lines end in `\r\n`, `\n` or a lone `\r` (also
//! when the `\r` and the `\n` arrive in different reads); a line starting with `:` is a
//! comment (`: ping`); a field's value starts after its colon and one optional space
//! (`data:x` and `data: x` are the same); the `data:` lines of an event are joined with `\n`;
//! a blank line ends the event; an event without `data:` lines is not dispatched; `id:`,
//! `retry:` and unknown fields are ignored (nothing here reconnects).
//!
//! One deliberate difference: at the end of the stream, an event that has `data:` lines but
//! no blank line after them is dispatched ([`SseParser::finish`]) where a browser would drop
//! it. A server that closes right after `data: [DONE]` has finished its stream; a stream cut
//! in the middle of an event is still reported as cut by [`ChatStream`](crate::ChatStream),
//! because it never reached `[DONE]`.
//!
//! The scan is linear: every byte is looked at once to find line ends (also when one line
//! arrives over many reads), copied once into the event's data, and never moved again.

use bytes::BytesMut;

/// What one complete event carried.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SseEvent {
    /// An event with data.
    Data {
        /// Its type, from its `event:` field; `None` for the default type (`message`).
        event: Option<String>,
        /// Its `data:` lines, joined with `\n`.
        data: String,
    },
    /// An event whose data starts with `[DONE]`: the stream is complete (OpenAI's rule).
    Done,
}

impl SseEvent {
    /// An event of the default type with this data.
    pub fn data(data: impl Into<String>) -> Self {
        Self::Data {
            event: None,
            data: data.into(),
        }
    }
}

/// Feeds bytes in, takes events out. Handles events and lines split across reads in any
/// way, and never panics on any input. See the [module docs](self) for the rules.
///
/// ```
/// use evolution_client::sse::{SseEvent, SseParser};
///
/// let mut parser = SseParser::default();
/// parser.feed(b"\xEF\xBB\xBF: ping\r\ndata: {\"a\":1}\r\n\r\nevent: error\rda");
/// assert_eq!(parser.next_event(), Some(SseEvent::data("{\"a\":1}")));
/// assert_eq!(parser.next_event(), None);
/// parser.feed(b"ta:{\"error\":{}}\r\rdata: [DONE]");
/// assert_eq!(
///     parser.next_event(),
///     Some(SseEvent::Data { event: Some("error".into()), data: "{\"error\":{}}".into() })
/// );
/// assert_eq!(parser.next_event(), None);
/// // The end of the stream dispatches the last event, even without its blank line.
/// assert_eq!(parser.finish(), Some(SseEvent::Done));
/// ```
#[derive(Debug, Default)]
pub struct SseParser {
    /// Received bytes not yet read as lines: at most one incomplete line once
    /// [`next_event`](Self::next_event) has returned `None`.
    buffer: BytesMut,
    /// How much of `buffer` is known to hold no line end, so that a line arriving over many
    /// reads is searched once, not once per read.
    scanned: usize,
    /// The last line ended with `\r`: a `\n` right after it belongs to that line end.
    after_cr: bool,
    /// The first line was read (and its byte order mark, if any, skipped).
    started: bool,
    /// The data of the event being read.
    data: String,
    /// Whether the event being read has a `data:` line (its data may be empty).
    has_data: bool,
    /// The `event:` field of the event being read.
    event: Option<String>,
    /// Bytes searched for line ends, for the test that the scan is linear.
    #[cfg(test)]
    searched: usize,
}

/// An event larger than this is refused rather than buffered without end.
pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// UTF-8's byte order mark, skipped at the start of a stream.
const BOM: &[u8] = b"\xEF\xBB\xBF";

impl SseParser {
    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes received but not yet dispatched as an event: the incomplete line and the data
    /// of the event being read.
    pub fn pending(&self) -> usize {
        self.buffer.len() + self.data.len()
    }

    /// The next complete event, if one has arrived.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            if self.after_cr {
                match self.buffer.first() {
                    None => return None,
                    Some(b'\n') => {
                        let _ = self.buffer.split_to(1);
                    }
                    Some(_) => {}
                }
                self.after_cr = false;
            }
            let unsearched = &self.buffer[self.scanned..];
            #[cfg(test)]
            {
                self.searched +=
                    memchr::memchr2(b'\n', b'\r', unsearched).map_or(unsearched.len(), |at| at + 1);
            }
            let Some(at) = memchr::memchr2(b'\n', b'\r', unsearched) else {
                self.scanned = self.buffer.len();
                return None;
            };
            let end = self.scanned + at;
            self.scanned = 0;
            let line = self.buffer.split_to(end + 1);
            self.after_cr = line[end] == b'\r';
            if let Some(event) = self.line(&line[..end]) {
                return Some(event);
            }
        }
    }

    /// The end of the stream: the bytes after the last line end are read as a last line, and
    /// an event with data still pending is dispatched (see the [module docs](self) for why).
    /// The parser is then empty.
    pub fn finish(&mut self) -> Option<SseEvent> {
        let rest = std::mem::take(&mut self.buffer);
        self.scanned = 0;
        self.after_cr = false;
        if !rest.is_empty()
            && let Some(event) = self.line(&rest)
        {
            return Some(event);
        }
        self.dispatch()
    }

    /// Reads one line (without its line end); a blank line dispatches the event.
    fn line(&mut self, mut line: &[u8]) -> Option<SseEvent> {
        if !self.started {
            self.started = true;
            line = line.strip_prefix(BOM).unwrap_or(line);
        }
        if line.is_empty() {
            return self.dispatch();
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(colon) => (&line[..colon], &line[colon + 1..]),
            None => (line, &b""[..]),
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        match field {
            // A comment: `: ping` keeps a connection alive.
            b"" => {}
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            // `id` and `retry` are for reconnecting, which a completion stream never does;
            // other fields are ignored by the rules.
            _ => {}
        }
        None
    }

    /// Ends the event being read: dispatched if it has data, forgotten otherwise.
    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        let data = std::mem::take(&mut self.data);
        if data.starts_with("[DONE]") {
            return Some(SseEvent::Done);
        }
        Some(SseEvent::Data { event, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn events(input: &[u8]) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        parser.feed(input);
        let mut events: Vec<_> = std::iter::from_fn(|| parser.next_event()).collect();
        events.extend(parser.finish());
        events
    }

    fn named(event: &str, data: &str) -> SseEvent {
        SseEvent::Data {
            event: Some(event.into()),
            data: data.into(),
        }
    }

    #[test]
    fn parses_the_openai_format() {
        let input =
            b": comment\r\ndata: {\"x\":1}\r\n\r\nevent: e\ndata:{\"y\":2}\n\ndata: [DONE]\n\n";
        assert_eq!(
            events(input),
            vec![
                SseEvent::data("{\"x\":1}"),
                named("e", "{\"y\":2}"),
                SseEvent::Done
            ]
        );
    }

    /// Each edge the rules name, as one stream.
    #[test]
    fn reads_every_edge_of_the_format() {
        let cases: [(&[u8], Vec<SseEvent>); 12] = [
            (b"\xEF\xBB\xBFdata: a\n\n", vec![SseEvent::data("a")]),
            // Only one byte order mark, and only at the start.
            (
                b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: \xEF\xBB\xBFb\n\n",
                vec![SseEvent::data("\u{feff}b")],
            ),
            (
                b"data: a\r\rdata: b\r\r",
                vec![SseEvent::data("a"), SseEvent::data("b")],
            ),
            (
                b"data: a\r\n\r\ndata: b\n\r\n",
                vec![SseEvent::data("a"), SseEvent::data("b")],
            ),
            (
                b": ping\n\n:\ndata: a\n: between\ndata: b\n\n",
                vec![SseEvent::data("a\nb")],
            ),
            (
                b"data: a\ndata\ndata:\ndata:  c\n\n",
                vec![SseEvent::data("a\n\n\n c")],
            ),
            (b"data:a\n\n", vec![SseEvent::data("a")]),
            (
                b"data: a\n\ndata: b",
                vec![SseEvent::data("a"), SseEvent::data("b")],
            ),
            (
                b"data: a\n\ndata: [DONE]",
                vec![SseEvent::data("a"), SseEvent::Done],
            ),
            // No data, no event; the type does not leak into the next event.
            (
                b"event: x\n\nid: 1\nretry: 5\n\ndata: a\n\n",
                vec![SseEvent::data("a")],
            ),
            (
                b"event: error\ndata: {}\n\ndata: [DONE] trailing\n\n",
                vec![named("error", "{}"), SseEvent::Done],
            ),
            (
                b"data\xff: a\ndata: \xff\n\n",
                vec![SseEvent::data("\u{fffd}")],
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                events(input),
                expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    /// A line arriving over many reads is searched once: the bytes searched stay within the
    /// bytes received (quadratic before: every read searched the whole incomplete line).
    #[test]
    fn a_long_line_over_many_reads_is_searched_once() {
        let mut parser = SseParser::default();
        let line = vec![b'x'; 256 * 1024];
        parser.feed(b"data: ");
        for read in line.chunks(64) {
            parser.feed(read);
            assert_eq!(parser.next_event(), None);
        }
        parser.feed(b"\n\n");
        let Some(SseEvent::Data { data, .. }) = parser.next_event() else {
            panic!("no event");
        };
        assert_eq!(data.len(), line.len());
        let received = line.len() + 8;
        assert!(
            parser.searched <= received,
            "searched {} bytes of {received}",
            parser.searched
        );
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_events(split in 0usize..80) {
            let input: &[u8] = b"data: {\"x\":1}\r\n\r\ndata: {\"y\":22}\r\r: c\ndata: [DONE]\n\n";
            let split = split.min(input.len());
            let mut parser = SseParser::default();
            parser.feed(&input[..split]);
            let mut got: Vec<_> = std::iter::from_fn(|| parser.next_event()).collect();
            parser.feed(&input[split..]);
            got.extend(std::iter::from_fn(|| parser.next_event()));
            got.extend(parser.finish());
            prop_assert_eq!(got, events(input));
        }

        #[test]
        fn never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let mut parser = SseParser::default();
            for chunk in chunks {
                parser.feed(&chunk);
                while parser.next_event().is_some() {}
            }
            let _ = parser.finish();
        }
    }
}
