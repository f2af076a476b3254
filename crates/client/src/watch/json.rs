//! A JSON answer's body, watched by its ends as it passes.
//!
//! Each frame is passed on at once; the watch keeps a reference to it. An answer of up to
//! [`WHOLE`] bytes (a chat answer is a few KB) is read as JSON when it ends, for its `model`
//! and `usage`. A larger one (a big embeddings answer) keeps only its first [`HEAD`] and
//! last [`TAIL`] bytes, since OpenAI-compatible servers write `model` near the start and
//! `usage` near the end (`{"id", "object", "created", "model", "choices" | "data", …,
//! "usage", …}`): a 16 MB answer costs no more than a short one. A large answer that puts
//! them elsewhere is counted without them.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use evolution_token::BoxError;
use http_body::{Body as HttpBody, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::operation::Operation;
use crate::{Body, Usage};

/// The largest answer read whole.
const WHOLE: usize = 1024 * 1024;
/// The bytes kept from the start of a larger one, to find `model`.
const HEAD: usize = 1024;
/// The bytes kept from the end of a larger one, to find `usage`.
const TAIL: usize = 2048;

pin_project! {
    /// See the [module docs](self).
    pub(crate) struct WatchedJson {
        #[pin]
        body: Body,
        // The frames so far, while they add up to at most WHOLE bytes.
        frames: Vec<Bytes>,
        held: usize,
        whole: bool,
        head: BytesMut,
        // At most 2 × TAIL bytes, the last TAIL of them the answer's end so far.
        tail: BytesMut,
        operation: Option<Operation>,
    }
}

impl WatchedJson {
    pub(crate) fn new(body: Body, operation: Operation) -> Self {
        Self {
            body,
            frames: Vec::new(),
            held: 0,
            whole: true,
            head: BytesMut::new(),
            tail: BytesMut::new(),
            operation: Some(operation),
        }
    }
}

impl HttpBody for WatchedJson {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let frame = match this.body.as_mut().poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(frame) => frame,
        };
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    keep_ends(this.head, this.tail, data);
                    if *this.whole {
                        *this.held += data.len();
                        if *this.held <= WHOLE {
                            this.frames.push(data.clone());
                        } else {
                            *this.whole = false;
                            this.frames.clear();
                        }
                    }
                }
            }
            Some(Err(_)) => {
                if let Some(operation) = this.operation.take() {
                    operation.fail("transport");
                }
            }
            None => {}
        }
        // A reader such as hyper stops at `is_end_stream()`: the end is looked for after
        // each frame too.
        let ended = matches!(frame, None | Some(Ok(_)) if this.body.is_end_stream());
        if ended && let Some(mut operation) = this.operation.take() {
            // The ends first, where servers put them: the whole answer is parsed only
            // when its usage is not at its end (vLLM's logprobs after it).
            let (mut model, mut usage) = (model_in(this.head), usage_in(this.tail));
            if usage.is_none() && *this.whole {
                (model, usage) = read_whole(&std::mem::take(this.frames).concat());
            }
            if let Some(model) = model {
                operation.response_model(&model);
            }
            if let Some(usage) = usage {
                operation.usage(&usage);
            }
            operation.finish(None);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The `model` and `usage` of a whole answer.
fn read_whole(answer: &[u8]) -> (Option<String>, Option<Usage>) {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(default)]
        model: Option<serde_json::Value>,
        #[serde(default, deserialize_with = "crate::chat::lenient_usage")]
        usage: Option<Usage>,
    }
    match serde_json::from_slice::<Answer>(answer) {
        Ok(Answer { model, usage }) => (
            model.and_then(|model| model.as_str().map(str::to_owned)),
            usage,
        ),
        Err(_) => (None, None),
    }
}

fn keep_ends(head: &mut BytesMut, tail: &mut BytesMut, data: &[u8]) {
    if head.len() < HEAD {
        let room = HEAD - head.len();
        head.extend_from_slice(&data[..data.len().min(room)]);
    }
    let data = &data[data.len().saturating_sub(TAIL)..];
    if tail.len() + data.len() > 2 * TAIL {
        // Dropping the front only when twice the tail is held: each byte moves at most once.
        let keep = TAIL.saturating_sub(data.len()).min(tail.len());
        let _ = tail.split_to(tail.len() - keep);
    }
    tail.extend_from_slice(data);
}

/// The string value of the first `"model"` member in `head`.
fn model_in(head: &[u8]) -> Option<String> {
    let at = find(head, b"\"model\"")?;
    let value = after_colon(head, at + b"\"model\"".len())?;
    if head.get(value) != Some(&b'"') {
        return None;
    }
    let mut index = value + 1;
    while index < head.len() {
        match head[index] {
            b'\\' => index += 2,
            b'"' => return serde_json::from_slice(&head[value..=index]).ok(),
            _ => index += 1,
        }
    }
    None
}

/// The object value of the last `"usage"` member in `tail`.
fn usage_in(tail: &[u8]) -> Option<Usage> {
    let at = rfind(tail, b"\"usage\"")?;
    let open = after_colon(tail, at + b"\"usage\"".len())?;
    if tail.get(open) != Some(&b'{') {
        return None;
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut index = open;
    while index < tail.len() {
        match (in_string, tail[index]) {
            (true, b'\\') => index += 1,
            (true, b'"') | (false, b'"') => in_string = !in_string,
            (false, b'{') => depth += 1,
            (false, b'}') => {
                depth -= 1;
                if depth == 0 {
                    return serde_json::from_slice(&tail[open..=index]).ok();
                }
            }
            _ => {}
        }
        index += 1;
    }
    None
}

/// The index of the value after `from`: past whitespace, a colon, and whitespace.
fn after_colon(bytes: &[u8], from: usize) -> Option<usize> {
    let colon = from
        + bytes
            .get(from..)?
            .iter()
            .position(|b| !b.is_ascii_whitespace())?;
    if bytes[colon] != b':' {
        return None;
    }
    let value = colon + 1;
    Some(
        value
            + bytes
                .get(value..)?
                .iter()
                .position(|b| !b.is_ascii_whitespace())?,
    )
}

fn find(bytes: &[u8], needle: &[u8]) -> Option<usize> {
    bytes
        .windows(needle.len())
        .position(|window| window == needle)
}

fn rfind(bytes: &[u8], needle: &[u8]) -> Option<usize> {
    bytes
        .windows(needle.len())
        .rposition(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched(answer: &[u8], frame: usize) -> (Option<String>, Option<Usage>) {
        let (mut head, mut tail) = (BytesMut::new(), BytesMut::new());
        for part in answer.chunks(frame) {
            keep_ends(&mut head, &mut tail, part);
        }
        (model_in(&head), usage_in(&tail))
    }

    #[test]
    fn the_model_and_usage_of_an_answer_are_found_in_any_framing() {
        let answer = br#"{"id":"c","object":"chat.completion","model":"m \"x\"","choices":[{"message":{"content":"\"usage\": {\"prompt_tokens\": 99}"}}],"usage": {"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,"prompt_tokens_details":{"cached_tokens":0}},"kv_transfer_params":null}"#;
        for frame in [1, 2, 7, 64, answer.len()] {
            let (model, usage) = watched(answer, frame);
            assert_eq!(model.as_deref(), Some("m \"x\""), "frames of {frame}");
            let usage = usage.expect("usage");
            assert_eq!(
                (
                    usage.prompt_tokens,
                    usage.completion_tokens,
                    usage.total_tokens
                ),
                (3, 4, 7)
            );
        }
    }

    #[test]
    fn a_long_answer_keeps_only_its_ends() {
        let mut answer = br#"{"model":"e","data":["#.to_vec();
        answer.extend(std::iter::repeat_n(b'1', 100_000));
        answer.extend_from_slice(br#"],"usage":{"prompt_tokens":5,"total_tokens":5}}"#);
        let (mut head, mut tail) = (BytesMut::new(), BytesMut::new());
        for part in answer.chunks(1000) {
            keep_ends(&mut head, &mut tail, part);
            assert!(head.len() <= HEAD && tail.len() <= 2 * TAIL);
        }
        assert_eq!(model_in(&head).as_deref(), Some("e"));
        assert_eq!(usage_in(&tail).map(|u| u.prompt_tokens), Some(5));
    }

    #[test]
    fn a_whole_answer_is_read_wherever_its_usage_is() {
        let mut answer =
            br#"{"model":"m","usage":{"prompt_tokens":2,"total_tokens":2},"prompt_logprobs":[""#
                .to_vec();
        answer.extend(std::iter::repeat_n(b'x', 10_000));
        answer.extend_from_slice(br#""]}"#);
        let (model, usage) = read_whole(&answer);
        assert_eq!(model.as_deref(), Some("m"));
        assert_eq!(usage.map(|u| u.prompt_tokens), Some(2));
        // A count a server left null reads as 0, rather than losing the answer's usage.
        let nulls = read_whole(br#"{"usage":{"prompt_tokens":null,"total_tokens":3}}"#).1;
        assert_eq!(
            nulls.map(|u| (u.prompt_tokens, u.total_tokens)),
            Some((0, 3))
        );
        assert_eq!(read_whole(b"[]"), (None, None));
    }

    #[test]
    fn answers_without_them_give_none() {
        for answer in [
            &b"{}"[..],
            b"not json",
            br#"{"model":1,"usage":"none"}"#,
            br#"{"usage":{"prompt_tokens":1"#,
        ] {
            assert_eq!(watched(answer, 3), (None, None));
        }
    }
}
