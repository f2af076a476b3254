//! Chat completion requests and answers (the OpenAI-compatible schema).

use serde::{Deserialize, Deserializer, Serialize};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The user.
    User,
    /// The model.
    Assistant,
    /// A tool's output.
    Tool,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "WireMessage")]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// What it says.
    pub content: String,
    /// A reasoning model's reasoning before its answer, as vLLM-like servers send it
    /// (`reasoning_content`, or `reasoning`). Never sent back: a conversation that includes
    /// an answer sends its content only, as these servers expect.
    #[serde(skip_serializing)]
    pub reasoning_content: Option<String>,
}

/// A message as it comes off the wire: `content` may be `null`, and the reasoning comes
/// under either name (both at once are not an error).
#[derive(Deserialize)]
struct WireMessage {
    role: Role,
    #[serde(default, deserialize_with = "null_as_empty")]
    content: String,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
}

impl From<WireMessage> for Message {
    fn from(wire: WireMessage) -> Self {
        Self {
            role: wire.role,
            content: wire.content,
            reasoning_content: wire.reasoning_content.or(wire.reasoning),
        }
    }
}

impl Message {
    /// A message from `role`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            reasoning_content: None,
        }
    }

    /// A reasoning model's reasoning before this answer, if it sent one.
    pub fn reasoning(&self) -> Option<&str> {
        self.reasoning_content.as_deref()
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}

/// A chat completion request: messages plus per-call overrides of the client's
/// generation parameters.
///
/// ```
/// use evolution_client::ChatRequest;
///
/// let request = ChatRequest::new()
///     .system("Answer in one sentence.")
///     .user("What is Rust?")
///     .temperature(0.2)
///     .max_tokens(64);
/// assert_eq!(request.messages.len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use]
pub struct ChatRequest {
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// Overrides of the client's defaults; `None` keeps the client's value.
    pub overrides: Overrides,
}

/// Per-call generation parameters; `None` keeps the client's value.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Overrides {
    /// Model name.
    pub model: Option<String>,
    /// Maximum tokens to generate.
    pub max_tokens: Option<u32>,
    /// Sampling temperature, 0 to 2.
    pub temperature: Option<f64>,
    /// Nucleus sampling, 0 to 1.
    pub top_p: Option<f64>,
    /// Frequency penalty, -2 to 2.
    pub frequency_penalty: Option<f64>,
    /// Presence penalty, -2 to 2.
    pub presence_penalty: Option<f64>,
    /// Stop sequences.
    pub stop: Option<Vec<String>>,
    /// Number of choices.
    pub n: Option<u32>,
}

impl ChatRequest {
    /// An empty request.
    pub fn new() -> Self {
        Self::default()
    }

    /// A request with one user message.
    pub fn from_prompt(prompt: impl Into<String>) -> Self {
        Self::new().user(prompt)
    }

    /// Appends a message.
    pub fn message(mut self, message: Message) -> Self {
        self.messages.push(message);
        self
    }

    /// Appends a system message.
    pub fn system(self, content: impl Into<String>) -> Self {
        self.message(Message::system(content))
    }

    /// Appends a user message.
    pub fn user(self, content: impl Into<String>) -> Self {
        self.message(Message::user(content))
    }

    /// Appends an assistant message.
    pub fn assistant(self, content: impl Into<String>) -> Self {
        self.message(Message::assistant(content))
    }

    /// Uses another model for this call.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.overrides.model = Some(model.into());
        self
    }

    /// Overrides `max_tokens`.
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.overrides.max_tokens = Some(max_tokens);
        self
    }

    /// Overrides `temperature`.
    pub fn temperature(mut self, temperature: f64) -> Self {
        self.overrides.temperature = Some(temperature);
        self
    }

    /// Overrides `top_p`.
    pub fn top_p(mut self, top_p: f64) -> Self {
        self.overrides.top_p = Some(top_p);
        self
    }

    /// Overrides `frequency_penalty`.
    pub fn frequency_penalty(mut self, penalty: f64) -> Self {
        self.overrides.frequency_penalty = Some(penalty);
        self
    }

    /// Overrides `presence_penalty`.
    pub fn presence_penalty(mut self, penalty: f64) -> Self {
        self.overrides.presence_penalty = Some(penalty);
        self
    }

    /// Overrides the stop sequences.
    pub fn stop(mut self, stop: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.overrides.stop = Some(stop.into_iter().map(Into::into).collect());
        self
    }

    /// Overrides `n`, the number of choices.
    pub fn n(mut self, n: u32) -> Self {
        self.overrides.n = Some(n);
        self
    }
}

/// The body sent to `POST {base_url}/chat/completions`.
#[derive(Debug, Serialize)]
pub(crate) struct WireRequest<'a> {
    pub(crate) model: &'a str,
    pub(crate) messages: &'a [Message],
    pub(crate) max_tokens: u32,
    pub(crate) temperature: f64,
    pub(crate) top_p: f64,
    pub(crate) frequency_penalty: f64,
    pub(crate) presence_penalty: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stop: Option<&'a [String]>,
    pub(crate) n: u32,
    pub(crate) stream: bool,
}

/// A chat completion.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct ChatResponse {
    /// The completion id.
    #[serde(default)]
    pub id: String,
    /// The model that answered.
    #[serde(default)]
    pub model: String,
    /// The choices (`n` of them).
    pub choices: Vec<Choice>,
    /// Token accounting, when the server sends it.
    #[serde(default)]
    pub usage: Option<Usage>,
}

impl ChatResponse {
    /// The first choice's text.
    pub fn text(&self) -> Option<&str> {
        self.choices.first().map(|c| c.message.content.as_str())
    }

    /// The first choice's reasoning (`reasoning_content`), when a reasoning model sent it.
    pub fn reasoning(&self) -> Option<&str> {
        self.choices.first().and_then(|c| c.message.reasoning())
    }
}

/// One answer of a completion.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct Choice {
    /// Its position.
    #[serde(default)]
    pub index: u32,
    /// The message.
    pub message: Message,
    /// Why generation stopped (`stop`, `length`, ...).
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// Token accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Usage {
    /// Tokens in the prompt.
    #[serde(default, deserialize_with = "count")]
    pub prompt_tokens: u64,
    /// Tokens generated.
    #[serde(default, deserialize_with = "count")]
    pub completion_tokens: u64,
    /// Their sum.
    #[serde(default, deserialize_with = "count")]
    pub total_tokens: u64,
}

/// A token count: a number (a float is cut to its whole part), or 0 for `null` or anything
/// else a server may write there, so that odd accounting never costs the answer.
fn count<'de, D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<u64, D::Error> {
    struct Count;
    impl<'de> serde::de::Visitor<'de> for Count {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a token count")
        }
        fn visit_u64<E>(self, n: u64) -> std::result::Result<u64, E> {
            Ok(n)
        }
        fn visit_i64<E>(self, n: i64) -> std::result::Result<u64, E> {
            Ok(u64::try_from(n).unwrap_or(0))
        }
        fn visit_f64<E>(self, n: f64) -> std::result::Result<u64, E> {
            // `as` saturates, and NaN becomes 0.
            Ok(n as u64)
        }
        fn visit_unit<E>(self) -> std::result::Result<u64, E> {
            Ok(0)
        }
        fn visit_none<E>(self) -> std::result::Result<u64, E> {
            Ok(0)
        }
        fn visit_str<E>(self, _: &str) -> std::result::Result<u64, E> {
            Ok(0)
        }
        fn visit_bool<E>(self, _: bool) -> std::result::Result<u64, E> {
            Ok(0)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<u64, A::Error> {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(0)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<u64, A::Error> {
            while map
                .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                .is_some()
            {}
            Ok(0)
        }
    }
    deserializer.deserialize_any(Count)
}

/// A `usage` member, or `None` when it is `null` or not of [`Usage`]'s shape: a server's
/// odd accounting must not cost the caller the chunk.
pub(crate) fn lenient_usage<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<Usage>, D::Error> {
    struct Lenient;
    impl<'de> serde::de::Visitor<'de> for Lenient {
        type Value = Option<Usage>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a usage object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            // Its counts are lenient themselves (`count`): an object always reads.
            Usage::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
        }
        fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E>(self, _: &str) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E>(self, _: bool) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }
    deserializer.deserialize_any(Lenient)
}

/// One Server-Sent Events chunk of a streamed completion.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct ChatChunk {
    /// The completion id.
    #[serde(default)]
    pub id: String,
    /// The model that answers.
    #[serde(default)]
    pub model: String,
    /// The choices' deltas.
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    /// The token usage, on the one chunk that reports it (the last, when the request asked
    /// for `stream_options.include_usage`). [`ChatStream`](crate::ChatStream) reads it and
    /// does not yield a chunk that carries only usage: see [`ChatStream::usage`](crate::ChatStream::usage).
    /// A `usage` of another shape reads as `None` rather than failing the chunk.
    #[serde(default, deserialize_with = "lenient_usage")]
    pub usage: Option<Usage>,
}

impl ChatChunk {
    /// The text this chunk adds to the first choice (empty when it adds none).
    pub fn text(&self) -> &str {
        self.choices
            .first()
            .and_then(|c| c.delta.content.as_deref())
            .unwrap_or("")
    }

    /// The reasoning this chunk adds to the first choice (empty when it adds none): a
    /// reasoning model streams it before the text.
    pub fn reasoning(&self) -> &str {
        self.choices
            .first()
            .and_then(|c| c.delta.reasoning_content.as_deref())
            .unwrap_or("")
    }
}

/// One choice's part of a chunk.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct ChunkChoice {
    /// Which choice.
    #[serde(default)]
    pub index: u32,
    /// What it adds.
    #[serde(default)]
    pub delta: Delta,
    /// Set on the last chunk of the choice.
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// What a chunk adds to a choice.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(from = "WireDelta")]
#[non_exhaustive]
pub struct Delta {
    /// Sent once, on the first chunk.
    pub role: Option<Role>,
    /// Text to append.
    pub content: Option<String>,
    /// Reasoning to append (a reasoning model's `reasoning_content`, or `reasoning`).
    pub reasoning_content: Option<String>,
}

/// A delta as it comes off the wire, the reasoning under either name.
#[derive(Deserialize)]
struct WireDelta {
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
}

impl From<WireDelta> for Delta {
    fn from(wire: WireDelta) -> Self {
        Self {
            role: wire.role,
            content: wire.content,
            reasoning_content: wire.reasoning_content.or(wire.reasoning),
        }
    }
}

/// A model from `GET {base_url}/models`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Model {
    /// Its name, for [`ChatRequest::model`].
    pub id: String,
    /// Its owner.
    #[serde(default)]
    pub owned_by: Option<String>,
    /// Creation time, Unix seconds.
    #[serde(default)]
    pub created: Option<u64>,
    /// What Foundation Models says about it (`metadata`), when the server sends it.
    #[serde(default, deserialize_with = "lenient_metadata")]
    pub metadata: Option<ModelMetadata>,
}

/// The `metadata` of a [`Model`] as Foundation Models sends it. Each field is `None` when
/// missing or of another type: an unexpected value never fails the model list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModelMetadata {
    /// `type`, such as `llm`.
    pub kind: Option<String>,
    /// `is_billable`.
    pub is_billable: Option<bool>,
    /// `function_calling`: whether the model takes tools.
    pub function_calling: Option<bool>,
    /// `structure_output`: whether the model takes a JSON schema for its answer.
    pub structure_output: Option<bool>,
}

fn lenient_metadata<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<ModelMetadata>, D::Error> {
    let Some(serde_json::Value::Object(fields)) =
        Option::<serde_json::Value>::deserialize(deserializer)?
    else {
        return Ok(None);
    };
    let flag = |name: &str| fields.get(name).and_then(serde_json::Value::as_bool);
    Ok(Some(ModelMetadata {
        kind: fields
            .get("type")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
        is_billable: flag("is_billable"),
        function_calling: flag("function_calling"),
        structure_output: flag("structure_output"),
    }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ModelList {
    pub(crate) data: Vec<Model>,
}

fn null_as_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod usage_tests {
    use super::*;

    fn usage_of(chunk: &str) -> Option<(u64, u64, u64)> {
        let chunk: ChatChunk = serde_json::from_str(chunk).expect("a chunk whatever its usage");
        chunk
            .usage
            .map(|u| (u.prompt_tokens, u.completion_tokens, u.total_tokens))
    }

    #[test]
    fn odd_usage_never_costs_the_chunk() {
        assert_eq!(
            usage_of(r#"{"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#),
            Some((3, 2, 5))
        );
        assert_eq!(
            usage_of(
                r#"{"usage":{"prompt_tokens":3.0,"completion_tokens":null,"total_tokens":-1,"details":{"x":[1]}}}"#
            ),
            Some((3, 0, 0))
        );
        for odd in ["null", "\"n/a\"", "7", "[1,2]", "true"] {
            assert_eq!(usage_of(&format!(r#"{{"usage":{odd}}}"#)), None, "{odd}");
        }
        assert_eq!(usage_of("{}"), None);
    }
}
