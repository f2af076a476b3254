//! What must hold for *any* input to the parsers that read what comes off the wire.
//!
//! One function per parser, shared by the stable `proptest` harness (`tests/fuzz/main.rs`,
//! run by `cargo test`) and the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`, nightly), so
//! both check exactly the same thing. Each panics if the parser panics or breaks a promise.

use std::time::{Duration, SystemTime};

use evolution_client::sse::{SseEvent, SseParser};
use evolution_client::{ChatChunk, ChatResponse};
use evolution_retry::{parse_retry_after, parse_retry_after_ms};
use evolution_token::{MAX_TOKEN_LIFETIME, parse_token_response};
use secrecy::ExposeSecret;

/// The IAM token answer: what is accepted is a usable token with a lifetime in
/// `(0, MAX_TOKEN_LIFETIME]`, and `Debug` never shows it.
pub(crate) fn iam_token(body: &[u8]) {
    let Ok(grant) = parse_token_response(body) else {
        return;
    };
    assert!(!grant.expires_in.is_zero());
    assert!(grant.expires_in <= MAX_TOKEN_LIFETIME);
    let token = grant.access_token.expose_secret();
    assert!(!token.is_empty());
    assert!(token.bytes().all(|b| b.is_ascii_graphic() && b != b'"'));
    // A token too short to be unique could be a substring of the redacted output itself.
    if token.len() >= 8 {
        assert!(!format!("{grant:?}").contains(token));
    }
}

fn sse_events(reads: &[&[u8]]) -> Vec<SseEvent> {
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    for read in reads {
        parser.feed(read);
        while let Some(event) = parser.next_event() {
            events.push(event);
        }
    }
    events.extend(parser.finish());
    events
}

/// The SSE rules read the plain way, over the whole input at once: the model the
/// incremental parser must agree with (see `evolution_client::sse` for the rules).
fn sse_reference(input: &[u8]) -> Vec<SseEvent> {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let mut lines = Vec::new();
    let (mut start, mut at) = (0, 0);
    while at < input.len() {
        match input[at] {
            b'\n' => {
                lines.push(&input[start..at]);
                at += 1;
                start = at;
            }
            b'\r' => {
                lines.push(&input[start..at]);
                at += if input.get(at + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                start = at;
            }
            _ => at += 1,
        }
    }
    if start < input.len() {
        lines.push(&input[start..]);
    }
    let mut events = Vec::new();
    let (mut data, mut event): (Option<String>, Option<String>) = (None, None);
    let mut dispatch = |data: &mut Option<String>, event: &mut Option<String>| {
        let event = event.take();
        match data.take() {
            Some(data) if data.starts_with("[DONE]") => events.push(SseEvent::Done),
            Some(data) => events.push(SseEvent::Data { event, data }),
            None => {}
        }
    };
    for line in lines {
        if line.is_empty() {
            dispatch(&mut data, &mut event);
            continue;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => (&line[..colon], &line[colon + 1..]),
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value.strip_prefix(b" ").unwrap_or(value));
        match field {
            b"data" => match &mut data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(&value);
                }
                None => data = Some(value.into_owned()),
            },
            b"event" => event = Some(value.into_owned()),
            _ => {}
        }
    }
    dispatch(&mut data, &mut event);
    events
}

/// The SSE parser: it agrees with the plain reading of the rules (`sse_reference`) however
/// the bytes are split into reads, nothing is lost from the pending count, and each event's
/// data goes through the chunk type.
pub(crate) fn sse(input: &[u8]) {
    let whole = sse_events(&[input]);
    assert_eq!(
        whole,
        sse_reference(input),
        "{:?}",
        String::from_utf8_lossy(input)
    );
    // The same bytes in reads of 1 to 17 bytes (chosen by the length, so that seeds are
    // plain SSE and the fuzzer still controls it).
    let step = input.len() % 17 + 1;
    let reads: Vec<&[u8]> = input.chunks(step).collect();
    assert_eq!(sse_events(&reads), whole);
    // Byte by byte, too (a CR and its LF in different reads).
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(sse_events(&bytes), whole);
    let mut parser = SseParser::default();
    parser.feed(input);
    while parser.next_event().is_some() {}
    // Invalid UTF-8 becomes U+FFFD (3 bytes for 1): pending data may grow, at most threefold.
    assert!(parser.pending() <= 3 * input.len());
    let _ = parser.finish();
    assert_eq!(parser.pending(), 0, "finish empties the parser");
    for event in whole {
        if let SseEvent::Data { data, .. } = event
            && let Ok(chunk) = serde_json::from_str::<ChatChunk>(&data)
        {
            let _ = (chunk.text(), chunk.reasoning());
        }
    }
}

/// `Retry-After` and `retry-after-ms`: signs are refused, and digits mean what they say
/// (exactly while f64 is exact: seconds below 2^53, milliseconds up to 2^32 (49 days);
/// within 1e-9 beyond, or `Duration::MAX` — the policy caps the wait at 60 s anyway).
pub(crate) fn retry_after(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let seconds = parse_retry_after(text, now);
    let millis = parse_retry_after_ms(text);
    let trimmed = text.trim();
    if trimmed.starts_with(['-', '+']) {
        assert_eq!(millis, None, "{text:?}");
        assert_eq!(seconds, None, "{text:?}");
    }
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        let near = |d: Duration, exact: f64| (d.as_secs_f64() - exact).abs() <= exact * 1e-9;
        let n: f64 = trimmed.parse().expect("digits");
        assert!(
            seconds.is_some_and(|d| d == Duration::MAX || near(d, n)),
            "{text:?}: {seconds:?}"
        );
        assert!(
            millis.is_some_and(|d| d == Duration::MAX || near(d, n / 1000.0)),
            "{text:?}: {millis:?}"
        );
        if let Ok(n) = trimmed.parse::<u64>() {
            if n < 1 << 53 {
                assert_eq!(seconds, Some(Duration::from_secs(n)), "{text:?}");
            }
            if n <= u64::from(u32::MAX) {
                assert_eq!(millis, Some(Duration::from_millis(n)), "{text:?}");
            }
        }
    }
}

/// The chat completion and chunk types as serde reads them: whatever parses can be used.
pub(crate) fn chat_response(body: &[u8]) {
    if let Ok(response) = serde_json::from_slice::<ChatResponse>(body) {
        let _ = (response.text(), response.reasoning());
        let _ = format!("{response:?}");
    }
    if let Ok(chunk) = serde_json::from_slice::<ChatChunk>(body) {
        let _ = (chunk.text(), chunk.reasoning());
    }
}
