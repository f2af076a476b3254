//! An incremental Server-Sent Events parser for the `data:` lines of a completion stream.

use bytes::BytesMut;

/// What one complete event carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseEvent {
    /// The joined `data:` lines of one event.
    Data(String),
    /// `data: [DONE]`: the stream is complete.
    Done,
}

/// Feeds bytes in, takes events out. Handles events split across chunks, `\r\n`
/// line ends, comments and fields other than `data`. Never panics on any input.
///
/// ```
/// use evolution_client::sse::{SseEvent, SseParser};
///
/// let mut parser = SseParser::default();
/// parser.feed(b"data: {\"a\":1}\n\nda");
/// assert_eq!(parser.next_event(), Some(SseEvent::Data("{\"a\":1}".into())));
/// assert_eq!(parser.next_event(), None);
/// parser.feed(b"ta: [DONE]\n\n");
/// assert_eq!(parser.next_event(), Some(SseEvent::Done));
/// ```
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: BytesMut,
    data: Option<String>,
}

/// An event larger than this is refused rather than buffered without end.
pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

impl SseParser {
    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes received but not yet part of a complete line.
    pub fn pending(&self) -> usize {
        self.buffer.len() + self.data.as_ref().map_or(0, String::len)
    }

    /// The next complete event, if one has arrived.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let mut line = self.buffer.split_to(end + 1);
            line.truncate(end);
            if line.last() == Some(&b'\r') {
                line.truncate(end - 1);
            }
            if line.is_empty() {
                // A blank line ends the event.
                match self.data.take() {
                    Some(data) if data == "[DONE]" => return Some(SseEvent::Done),
                    Some(data) => return Some(SseEvent::Data(data)),
                    None => continue,
                }
            }
            let line = String::from_utf8_lossy(&line);
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (&*line, ""),
            };
            if field == "data" {
                match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => self.data = Some(value.to_owned()),
                }
            }
            // Comments (":...") and other fields (event, id, retry) carry nothing we use.
        }
        None
    }

    /// Whether the bytes left over (no trailing blank line) still hold a `[DONE]`.
    pub(crate) fn finish(&mut self) -> Option<SseEvent> {
        if !self.buffer.is_empty() {
            self.buffer.extend_from_slice(b"\n\n");
        } else if self.data.is_some() {
            self.buffer.extend_from_slice(b"\n");
        }
        let event = self.next_event();
        self.buffer.clear();
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn events(input: &[u8]) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        parser.feed(input);
        std::iter::from_fn(|| parser.next_event()).collect()
    }

    #[test]
    fn parses_the_openai_format() {
        let input =
            b": comment\r\ndata: {\"x\":1}\r\n\r\nevent: e\ndata:{\"y\":2}\n\ndata: [DONE]\n\n";
        assert_eq!(
            events(input),
            vec![
                SseEvent::Data("{\"x\":1}".into()),
                SseEvent::Data("{\"y\":2}".into()),
                SseEvent::Done
            ]
        );
    }

    #[test]
    fn joins_multi_line_data() {
        assert_eq!(
            events(b"data: a\ndata: b\n\n"),
            vec![SseEvent::Data("a\nb".into())]
        );
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_events(split in 0usize..80) {
            let input: &[u8] = b"data: {\"x\":1}\n\ndata: {\"y\":22}\r\n\r\n: c\ndata: [DONE]\n\n";
            let split = split.min(input.len());
            let mut parser = SseParser::default();
            parser.feed(&input[..split]);
            let mut got: Vec<_> = std::iter::from_fn(|| parser.next_event()).collect();
            parser.feed(&input[split..]);
            got.extend(std::iter::from_fn(|| parser.next_event()));
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
