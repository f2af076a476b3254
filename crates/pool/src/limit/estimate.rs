//! Tokens a request will use, estimated from its body before the call.

use serde_json::{Map, Value};

/// `max_tokens` of a chat request that leaves it out: the client's `DEFAULT_MAX_TOKENS`
/// (evolution-client builds on this crate, so it cannot be named here).
const DEFAULT_MAX_TOKENS: u64 = 512;
/// What each message adds around its content (role, separators), as OpenAI counts it.
const TOKENS_PER_MESSAGE: u64 = 4;
/// The tokens that start the reply.
const REPLY_PRIMING: u64 = 3;
/// Bound on `n` (choices per request) taken into account.
const MAX_CHOICES: u64 = 128;

/// The tokens a request will use, counted against a deployment's TPM before the call and
/// corrected from the answer's `usage` after it ([`RateLimits::settle`](super::RateLimits::settle)).
///
/// - Chat (`messages`): the prompt, about 4 bytes a token over every message's `content`
///   (a string, or the `text` of its parts) plus a few tokens per message and the `tools`,
///   and the completion: `max_completion_tokens`, else `max_tokens`, else 512, times `n`.
/// - Embeddings (`input`: a string, strings, or token ids): the input alone.
/// - Anything else, or a body that is not JSON: a quarter of its bytes. Never panics.
///
/// ```
/// use evolution_pool::estimate_tokens;
///
/// let chat = br#"{"messages":[{"role":"user","content":"Hello there!"}],"max_tokens":100}"#;
/// assert_eq!(estimate_tokens(chat), 3 + 4 + 3 + 100);
/// assert_eq!(estimate_tokens(br#"{"input":["abcdefgh","abcd"]}"#), 3);
/// assert_eq!(estimate_tokens(b"not json"), 2);
/// ```
pub fn estimate_tokens(body: &[u8]) -> u32 {
    let tokens = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(request)) => {
            if let Some(messages) = request.get("messages") {
                chat(&request, messages)
            } else if let Some(input) = request.get("input") {
                text_tokens(input)
            } else if let Some(prompt) = request.get("prompt") {
                text_tokens(prompt).saturating_add(completion(&request))
            } else {
                bytes_to_tokens(body.len())
            }
        }
        _ => bytes_to_tokens(body.len()),
    };
    u32::try_from(tokens).unwrap_or(u32::MAX)
}

fn chat(request: &Map<String, Value>, messages: &Value) -> u64 {
    let prompt = match messages {
        Value::Array(messages) => messages.iter().fold(REPLY_PRIMING, |sum, message| {
            let content = message.get("content").map_or(0, text_tokens);
            sum.saturating_add(TOKENS_PER_MESSAGE.saturating_add(content))
        }),
        other => text_tokens(other),
    };
    let tools = request.get("tools").map_or(0, |tools| {
        serde_json::to_vec(tools).map_or(0, |json| bytes_to_tokens(json.len()))
    });
    prompt
        .saturating_add(tools)
        .saturating_add(completion(request))
}

fn completion(request: &Map<String, Value>) -> u64 {
    let max_tokens = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|field| request.get(*field).and_then(Value::as_u64))
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let choices = request
        .get("n")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .clamp(1, MAX_CHOICES);
    max_tokens.saturating_mul(choices)
}

/// Strings count by their bytes, token ids (embeddings' integer inputs) one each, content
/// parts by their `text`; images and other parts count nothing.
fn text_tokens(value: &Value) -> u64 {
    match value {
        Value::String(text) => bytes_to_tokens(text.len()),
        Value::Number(_) => 1,
        Value::Array(values) => values
            .iter()
            .fold(0, |sum, value| sum.saturating_add(text_tokens(value))),
        Value::Object(part) => part.get("text").map_or(0, text_tokens),
        Value::Null | Value::Bool(_) => 0,
    }
}

fn bytes_to_tokens(bytes: usize) -> u64 {
    u64::try_from(bytes.div_ceil(4)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn chat_counts_contents_messages_and_max_tokens() {
        let body = br#"{"model":"m","messages":[
            {"role":"system","content":"You are terse."},
            {"role":"user","content":"What is GCRA, in one line?"}
        ],"max_tokens":64}"#;
        // ceil(14/4) + ceil(26/4) + 2 messages * 4 + priming 3 + 64.
        assert_eq!(estimate_tokens(body), 4 + 7 + 8 + 3 + 64);
    }

    #[test]
    fn chat_without_max_tokens_expects_the_default() {
        let body = br#"{"messages":[{"role":"user","content":"abcd"}]}"#;
        assert_eq!(estimate_tokens(body), 1 + 4 + 3 + 512);
    }

    #[test]
    fn max_completion_tokens_wins_and_n_multiplies() {
        let body = br#"{"messages":[],"max_completion_tokens":10,"max_tokens":99,"n":3}"#;
        assert_eq!(estimate_tokens(body), 3 + 30);
    }

    #[test]
    fn content_parts_count_their_text_only() {
        let body = br#"{"messages":[{"role":"user","content":[
            {"type":"text","text":"12345678"},
            {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAAAAAAAAAAAAAA"}}
        ]}],"max_tokens":1}"#;
        assert_eq!(estimate_tokens(body), 2 + 4 + 3 + 1);
    }

    #[test]
    fn tools_count_as_prompt() {
        let tools = r#"[{"type":"function","function":{"name":"f"}}]"#;
        let body = format!(r#"{{"messages":[],"max_tokens":0,"tools":{tools}}}"#);
        let expected = 3 + u32::try_from(tools.len().div_ceil(4)).unwrap();
        assert_eq!(estimate_tokens(body.as_bytes()), expected);
    }

    #[test]
    fn embeddings_count_the_input_only() {
        assert_eq!(estimate_tokens(br#"{"input":"abcdefghi"}"#), 3);
        assert_eq!(estimate_tokens(br#"{"input":["abcd","efgh"]}"#), 2);
        assert_eq!(estimate_tokens(br#"{"input":[1,2,3,4,5]}"#), 5);
        assert_eq!(estimate_tokens(br#"{"input":[[1,2],[3]]}"#), 3);
    }

    #[test]
    fn bad_json_falls_back_to_bytes() {
        assert_eq!(estimate_tokens(b""), 0);
        assert_eq!(estimate_tokens(b"{\"messages\": [tru"), 5);
        assert_eq!(estimate_tokens(b"[1,2,3,4]"), 3);
        assert_eq!(estimate_tokens(&[0xff; 9]), 3);
        assert_eq!(estimate_tokens(br#"{"unknown":"shape"}"#), 5);
    }

    #[test]
    fn odd_values_never_panic_or_overflow() {
        let body = br#"{"messages":"just text","max_tokens":18446744073709551615,"n":1e300}"#;
        assert_eq!(estimate_tokens(body), u32::MAX);
        let body = br#"{"messages":[null,1,{"content":{"text":"abcd"}}],"max_tokens":-5}"#;
        assert_eq!(estimate_tokens(body), 3 + 4 + 4 + 4 + 1 + 512);
    }

    proptest! {
        #[test]
        fn never_panics_and_bytes_bound_what_is_not_json(
            body in proptest::collection::vec(any::<u8>(), 0..512)
        ) {
            let estimate = estimate_tokens(&body);
            if serde_json::from_slice::<Value>(&body).is_err() {
                prop_assert_eq!(u64::from(estimate), bytes_to_tokens(body.len()));
            }
        }

        #[test]
        fn a_chat_estimate_covers_its_completion_and_grows_with_its_prompt(
            contents in proptest::collection::vec(".{0,64}", 0..8),
            max_tokens in 0u32..100_000,
        ) {
            let messages: Vec<Value> = contents
                .iter()
                .map(|content| serde_json::json!({"role": "user", "content": content}))
                .collect();
            let request = |messages: &[Value]| {
                let body = serde_json::json!({"messages": messages, "max_tokens": max_tokens});
                estimate_tokens(&serde_json::to_vec(&body).unwrap())
            };
            let estimate = request(&messages);
            let prompt_bytes: usize = contents.iter().map(String::len).sum();
            prop_assert!(u64::from(estimate) >= u64::from(max_tokens) + bytes_to_tokens(prompt_bytes));
            let mut longer = messages.clone();
            longer.push(serde_json::json!({"role": "user", "content": "more"}));
            prop_assert!(request(&longer) > estimate);
        }
    }
}
