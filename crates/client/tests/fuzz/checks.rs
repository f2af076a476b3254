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
    events
}

/// The SSE parser: how the bytes are split into reads changes nothing, nothing is lost
/// from the pending count, and each event's data goes through the chunk type.
pub(crate) fn sse(input: &[u8]) {
    let whole = sse_events(&[input]);
    // The same bytes in reads of 1 to 17 bytes (chosen by the length, so that seeds are
    // plain SSE and the fuzzer still controls it).
    let step = input.len() % 17 + 1;
    let reads: Vec<&[u8]> = input.chunks(step).collect();
    assert_eq!(sse_events(&reads), whole);
    // Byte by byte, too.
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(sse_events(&bytes), whole);
    let mut parser = SseParser::default();
    parser.feed(input);
    while parser.next_event().is_some() {}
    // Invalid UTF-8 becomes U+FFFD (3 bytes for 1): pending data may grow, at most threefold.
    assert!(parser.pending() <= 3 * input.len());
    for event in whole {
        if let SseEvent::Data(data) = event
            && let Ok(chunk) = serde_json::from_str::<ChatChunk>(&data)
        {
            let _ = chunk.text();
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
        let _ = response.text();
        let _ = format!("{response:?}");
    }
    if let Ok(chunk) = serde_json::from_slice::<ChatChunk>(body) {
        let _ = chunk.text();
    }
}
