//! `POST /v1/chat/completions`: a deterministic OpenAI-compatible chat completion.
//!
//! The answer's content is `"[<key id>] echo: <last user message>"`, so a test can see which key
//! a request was sent with. A message's content is a string, `null`, or OpenAI's array of
//! parts, whose `text` parts are joined with `\n` (other parts, such as images, are skipped).
//! Token counts are whitespace-separated word counts. `n` asks for that many identical
//! choices; `stream: true` answers server-sent events whose `delta.content` pieces
//! concatenate to exactly the non-streamed content, ending with `data: [DONE]`, plus a usage
//! chunk first when `stream_options.include_usage` is true.
//!
//! A [reasoning model](crate::EmulatorBuilder::reasoning_model) answers
//! `message.reasoning_content` too (`"thinking about: <last user message>"`), streamed as
//! `delta.reasoning_content` pieces before the content. With a configured model list, a
//! request for another model answers 404 with code `model_not_found`.
//!
//! An emulator that [refuses `stream_options`](crate::EmulatorBuilder::refuse_stream_options)
//! answers a request with that member 400, as older OpenAI-compatible servers do.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use crate::auth::authorize;
use crate::exchange::{Answer, inference};
use crate::models::ModelSpec;
use crate::route::Route;
use crate::state::Shared;
use crate::stats::{Counters, ReportedUsage};

/// Most choices one request may ask for.
const MAX_CHOICES: u32 = 128;

pub(crate) async fn completions(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    inference(&shared, Route::Chat, request, answer).await
}

#[derive(Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<Message>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    stream: Option<bool>,
    /// Kept as sent (`null` included) so that an emulator refusing the member sees it
    /// whatever its value; read as [`StreamOptions`] after.
    #[serde(default, deserialize_with = "present")]
    stream_options: Option<serde_json::Value>,
    /// `stream_options.include_usage`, as [`parse`] reads it.
    #[serde(skip)]
    include_usage: bool,
}

/// A member that is present, whatever its value (`null` included).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

/// The 400 an older OpenAI-compatible server (Azure OpenAI's older API versions) answers a
/// request naming `stream_options`, byte for byte.
const STREAM_OPTIONS_REFUSED: &[u8] = br#"{"error":{"message":"Unrecognized request argument supplied: stream_options","type":"invalid_request_error","param":"stream_options","code":null}}"#;

#[derive(Deserialize)]
struct Message {
    role: String,
    /// Required, as OpenAI requires it; `null` (an assistant turn with tool calls) reads as
    /// empty.
    #[serde(deserialize_with = "content")]
    content: String,
}

/// A message's content: a string, `null`, or an array of parts whose text parts are joined
/// with `\n`.
fn content<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Content {
        Text(String),
        Parts(Vec<Part>),
        Null(()),
    }
    #[derive(Deserialize)]
    struct Part {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        text: Option<serde_json::Value>,
    }
    match Content::deserialize(deserializer)? {
        Content::Text(text) => Ok(text),
        Content::Null(()) => Ok(String::new()),
        Content::Parts(parts) => {
            let mut texts = Vec::new();
            for part in parts {
                if part.kind != "text" {
                    continue;
                }
                match part.text {
                    Some(serde_json::Value::String(text)) => texts.push(text),
                    _ => {
                        return Err(serde::de::Error::custom(
                            "a text content part needs a string `text`",
                        ));
                    }
                }
            }
            Ok(texts.join("\n"))
        }
    }
}

#[derive(Default, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<Choice<'a>>,
    usage: Usage,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
}

#[derive(Clone, Copy, Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

impl Usage {
    fn reported(self) -> ReportedUsage {
        ReportedUsage {
            input: self.prompt_tokens,
            output: self.completion_tokens,
        }
    }
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Default, Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
}

fn answer(shared: &Shared, headers: &HeaderMap, body: Result<Bytes, Answer>) -> Answer {
    let key = match authorize(shared, headers) {
        Ok(key) => key,
        Err(answer) => return answer,
    };
    if !is_json(headers) {
        return Answer::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content-type must be application/json",
            Some("invalid_request_error"),
        );
    }
    let refuse_stream_options = shared.refuse_stream_options();
    let request = match body.and_then(|body| parse(&body, refuse_stream_options)) {
        Ok(request) => request,
        Err(answer) => return answer,
    };
    let reasoning = match shared.model(&request.model) {
        Ok(model) => model.is_some_and(ModelSpec::reasoning),
        Err(()) => return crate::models::not_found(&request.model),
    };
    let last_user = request
        .messages
        .iter()
        .rev()
        .find(|message| message.role == "user")
        .map_or("", |message| message.content.as_str());
    let content = format!("[{}] echo: {last_user}", key.id);
    let reasoning = reasoning.then(|| format!("thinking about: {last_user}"));
    let n = request.n.unwrap_or(1);
    let completion_tokens =
        (words(&content) + reasoning.as_deref().map_or(0, words)) * u64::from(n);
    let prompt_tokens = request.messages.iter().map(|m| words(&m.content)).sum();
    let usage = Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
    };
    let include_usage = request.include_usage;
    let id = format!("chatcmpl-{}", shared.next_completion());
    let created = unix_now();
    let reply = Reply {
        id: &id,
        created,
        model: &request.model,
        content: &content,
        reasoning: reasoning.as_deref(),
        n,
        usage,
        content_chunks: shared.stream_chunks(),
    };
    if request.stream.unwrap_or(false) {
        Counters::bump(&shared.counters.chat_streams);
        reply.events(include_usage)
    } else {
        Answer::reporting(reply.completion(), usage.reported())
    }
}

/// Whether the request says its body is JSON, as an OpenAI-compatible server requires.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// A chat request, checked; `refuse_stream_options` answers one naming `stream_options` 400.
fn parse(body: &[u8], refuse_stream_options: bool) -> Result<ChatRequest, Answer> {
    let invalid = |message: &str| {
        Answer::error(
            StatusCode::BAD_REQUEST,
            message,
            Some("invalid_request_error"),
        )
    };
    // serde would also take a JSON array for a struct.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(invalid("request body must be a JSON object"));
    }
    let mut request: ChatRequest = serde_json::from_slice(body)
        .map_err(|error| invalid(&format!("invalid request body: {error}")))?;
    if refuse_stream_options && request.stream_options.is_some() {
        return Err(Answer::Json {
            status: StatusCode::BAD_REQUEST,
            body: Bytes::from_static(STREAM_OPTIONS_REFUSED),
            usage: None,
        });
    }
    let options = match request.stream_options.take() {
        None | Some(serde_json::Value::Null) => StreamOptions::default(),
        Some(options) => StreamOptions::deserialize(options).map_err(|error| {
            invalid(&format!("invalid request body: `stream_options`: {error}"))
        })?,
    };
    if request.messages.is_empty() {
        return Err(invalid("`messages` must not be empty"));
    }
    if let Some(n) = request.n
        && !(1..=MAX_CHOICES).contains(&n)
    {
        return Err(invalid("`n` must be between 1 and 128"));
    }
    request.include_usage = options.include_usage.unwrap_or(false);
    Ok(request)
}

/// Everything one answer is made of.
struct Reply<'a> {
    id: &'a str,
    created: u64,
    model: &'a str,
    content: &'a str,
    reasoning: Option<&'a str>,
    n: u32,
    usage: Usage,
    /// Content pieces per streamed choice: `None` for one per word.
    content_chunks: Option<usize>,
}

impl Reply<'_> {
    fn completion(&self) -> Bytes {
        let choices = (0..self.n)
            .map(|index| Choice {
                index,
                message: AssistantMessage {
                    role: "assistant",
                    content: self.content,
                    reasoning_content: self.reasoning,
                },
                logprobs: None,
                finish_reason: "stop",
            })
            .collect();
        let completion = Completion {
            id: self.id,
            object: "chat.completion",
            created: self.created,
            model: self.model,
            choices,
            usage: self.usage,
        };
        serde_json::to_vec(&completion)
            .map(Bytes::from)
            .unwrap_or_default()
    }

    /// Per choice: a role event, one event per piece of reasoning (a reasoning model's), one
    /// per piece of content, a finish event; then the usage event if asked for, then `[DONE]`.
    fn events(&self, include_usage: bool) -> Answer {
        let mut events = Vec::new();
        for index in 0..self.n {
            let role = Delta {
                role: Some("assistant"),
                content: Some(""),
                ..Delta::default()
            };
            events.push(self.chunk(index, role, None));
            for piece in pieces(self.reasoning.unwrap_or_default()) {
                let delta = Delta {
                    reasoning_content: Some(piece),
                    ..Delta::default()
                };
                events.push(self.chunk(index, delta, None));
            }
            let content: Box<dyn Iterator<Item = &str>> = match self.content_chunks {
                Some(n) => Box::new(even_pieces(self.content, n)),
                None => Box::new(pieces(self.content)),
            };
            for piece in content {
                let delta = Delta {
                    content: Some(piece),
                    ..Delta::default()
                };
                events.push(self.chunk(index, delta, None));
            }
            events.push(self.chunk(index, Delta::default(), Some("stop")));
        }
        let usage = include_usage.then(|| (events.len(), self.usage.reported()));
        if include_usage {
            events.push(event(&Chunk {
                id: self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: self.model,
                choices: Vec::new(),
                usage: Some(self.usage),
            }));
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        Answer::Events { events, usage }
    }

    fn chunk(&self, index: u32, delta: Delta<'_>, finish_reason: Option<&'static str>) -> Bytes {
        event(&Chunk {
            id: self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model,
            choices: vec![ChunkChoice {
                index,
                delta,
                logprobs: None,
                finish_reason,
            }],
            usage: None,
        })
    }
}

/// One server-sent event: `data: <json>` and a blank line.
fn event(chunk: &Chunk<'_>) -> Bytes {
    let mut event = b"data: ".to_vec();
    // Serializing plain structs into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut event, chunk);
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}

/// Split into word-ish pieces, each word with the whitespace after it; they concatenate back to
/// `text` exactly.
fn pieces(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut seen_space = false;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                if c.is_whitespace() {
                    seen_space = true;
                    false
                } else {
                    seen_space
                }
            })
            .map_or(rest.len(), |(at, _)| at);
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

/// Split into exactly `n` pieces of about as many characters each (empty ones when `text` has
/// fewer than `n` characters); they concatenate back to `text` exactly.
fn even_pieces(text: &str, n: usize) -> impl Iterator<Item = &str> {
    let mut bounds: Vec<usize> = text.char_indices().map(|(at, _)| at).collect();
    bounds.push(text.len());
    let chars = bounds.len() - 1;
    (0..n).map(move |i| &text[bounds[i * chars / n]..bounds[(i + 1) * chars / n]])
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

// `created` is a wall-clock timestamp by the protocol's definition.
#[allow(clippy::disallowed_methods)]
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

#[cfg(test)]
mod tests {
    use super::{even_pieces, pieces};

    #[test]
    fn pieces_concatenate_to_the_text() {
        for text in [
            "",
            "a",
            " a",
            "a b",
            "[k1] echo:  hello\n world ",
            "  ",
            "é ü",
        ] {
            let parts: Vec<&str> = pieces(text).collect();
            assert_eq!(parts.concat(), text);
            assert!(parts.iter().all(|part| !part.is_empty()));
        }
        assert_eq!(
            pieces("[k] echo: hi there").collect::<Vec<_>>(),
            ["[k] ", "echo: ", "hi ", "there"]
        );
    }

    #[test]
    fn even_pieces_are_exactly_n_and_concatenate_to_the_text() {
        for text in ["", "a", "[k1] echo: hello world", "é ü ß"] {
            for n in [1, 2, 3, 7, 30] {
                let parts: Vec<&str> = even_pieces(text, n).collect();
                assert_eq!(parts.len(), n);
                assert_eq!(parts.concat(), text);
            }
        }
        assert_eq!(
            even_pieces("abcdef", 3).collect::<Vec<_>>(),
            ["ab", "cd", "ef"]
        );
    }
}
