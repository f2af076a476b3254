//! Embeddings requests and answers (OpenAI's `POST /embeddings` schema).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{Error, Result, Usage};

/// An embeddings request: one or more texts, and optionally another model and a vector
/// length.
///
/// ```
/// use evolution_client::EmbeddingsRequest;
///
/// let one = EmbeddingsRequest::new("What is Rust?");
/// let many = EmbeddingsRequest::many(["first text", "second text"])
///     .model("ai-sage/Giga-Embeddings-instruct-3B")
///     .dimensions(256);
/// assert_eq!(one.input.len(), 1);
/// assert_eq!(many.input.len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct EmbeddingsRequest {
    /// The texts to embed, one vector each, in this order.
    pub input: Vec<String>,
    /// The model; `None` uses the client's [`model`](crate::EvolutionInference::model).
    pub model: Option<String>,
    /// The vector length, for models that can shorten their vectors; `None` for the model's
    /// own.
    pub dimensions: Option<u32>,
}

impl EmbeddingsRequest {
    /// A request for one text.
    pub fn new(input: impl Into<String>) -> Self {
        Self {
            input: vec![input.into()],
            ..Self::default()
        }
    }

    /// A request for several texts, answered in one call.
    pub fn many(inputs: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            input: inputs.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Appends a text.
    pub fn input(mut self, input: impl Into<String>) -> Self {
        self.input.push(input.into());
        self
    }

    /// Uses this model instead of the client's.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Asks for vectors of this length.
    pub fn dimensions(mut self, dimensions: u32) -> Self {
        self.dimensions = Some(dimensions);
        self
    }

    /// The JSON body, with `model` defaulting to `default_model`.
    pub(crate) fn to_body(&self, default_model: &str) -> Result<Bytes> {
        if self.input.is_empty() {
            return Err(Error::config(
                "input",
                "an embeddings request needs at least one text",
            ));
        }
        let wire = WireRequest {
            model: self.model.as_deref().unwrap_or(default_model),
            input: match self.input.as_slice() {
                [one] => WireInput::One(one),
                many => WireInput::Many(many),
            },
            // Floats, not base64: the default of the API, said out loud because some SDKs
            // default to base64 and servers may follow.
            encoding_format: "float",
            dimensions: self.dimensions,
        };
        serde_json::to_vec(&wire)
            .map(Bytes::from)
            .map_err(|error| Error::config("input", format!("cannot be encoded as JSON: {error}")))
    }
}

impl From<&str> for EmbeddingsRequest {
    fn from(input: &str) -> Self {
        Self::new(input)
    }
}

impl From<String> for EmbeddingsRequest {
    fn from(input: String) -> Self {
        Self::new(input)
    }
}

impl From<Vec<String>> for EmbeddingsRequest {
    fn from(inputs: Vec<String>) -> Self {
        Self::many(inputs)
    }
}

/// The body sent to `POST {base_url}/embeddings`.
#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    input: WireInput<'a>,
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<u32>,
}

/// One text is sent as a string, several as an array, as OpenAI's SDKs do.
#[derive(Serialize)]
#[serde(untagged)]
enum WireInput<'a> {
    One(&'a str),
    Many(&'a [String]),
}

/// The answer to an [`EmbeddingsRequest`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct EmbeddingsResponse {
    /// One vector per input text, in input order (sorted by `index`).
    pub data: Vec<Embedding>,
    /// The model that answered.
    #[serde(default)]
    pub model: String,
    /// Token accounting, when the server sends it (`completion_tokens` is 0).
    #[serde(default)]
    pub usage: Option<Usage>,
}

impl EmbeddingsResponse {
    /// The vectors, in input order.
    pub fn vectors(&self) -> impl Iterator<Item = &[f32]> {
        self.data.iter().map(|entry| entry.embedding.as_slice())
    }

    /// Servers may answer a batch out of order; `index` says where each vector belongs.
    pub(crate) fn in_input_order(mut self) -> Self {
        self.data.sort_by_key(|entry| entry.index);
        self
    }
}

/// One vector of an [`EmbeddingsResponse`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct Embedding {
    /// The position of its text in the request.
    #[serde(default)]
    pub index: u32,
    /// The vector.
    pub embedding: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn body(request: &EmbeddingsRequest) -> Value {
        serde_json::from_slice(&request.to_body("default-model").unwrap()).unwrap()
    }

    #[test]
    fn one_text_is_a_string_and_several_an_array() {
        assert_eq!(
            body(&EmbeddingsRequest::new("a")),
            json!({ "model": "default-model", "input": "a", "encoding_format": "float" })
        );
        assert_eq!(
            body(&EmbeddingsRequest::many(["a", "b"]).model("m").dimensions(8)),
            json!({
                "model": "m", "input": ["a", "b"], "encoding_format": "float", "dimensions": 8,
            })
        );
    }

    #[test]
    fn no_text_is_a_config_error() {
        let error = EmbeddingsRequest::default().to_body("m").unwrap_err();
        assert!(matches!(error, Error::Config { .. }), "{error:?}");
    }

    #[test]
    fn answers_are_put_in_input_order() {
        let answer: EmbeddingsResponse = serde_json::from_value(json!({
            "object": "list",
            "data": [
                { "object": "embedding", "index": 1, "embedding": [0.0, 1.0] },
                { "object": "embedding", "index": 0, "embedding": [1.0, 0.0] },
            ],
            "model": "m",
            "usage": { "prompt_tokens": 2, "total_tokens": 2 },
        }))
        .unwrap();
        let answer = answer.in_input_order();
        let vectors: Vec<&[f32]> = answer.vectors().collect();
        assert_eq!(vectors, [&[1.0, 0.0][..], &[0.0, 1.0][..]]);
        assert_eq!(answer.usage.unwrap().total_tokens, 2);
    }
}
