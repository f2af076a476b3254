//! `POST /v1/embeddings`: deterministic OpenAI-compatible embeddings.
//!
//! `input` is a string, an array of strings, an array of token ids, or an array of token-id
//! arrays; each input gets one vector in `data`, in order. A vector is drawn from a generator
//! seeded with a hash of its input and scaled to unit length, so the same input always gets the
//! same vector (whatever the model, the key or the other inputs of the request) and two inputs
//! almost surely different ones. Its length is `dimensions`, or
//! [`DEFAULT_EMBEDDING_DIMENSIONS`]. `encoding_format: "base64"` sends each vector as the base64
//! of its little-endian `f32`s, as OpenAI does. `usage.prompt_tokens` counts the
//! whitespace-separated words of the strings, or the token ids.
//!
//! A missing or empty `input` (an empty string, an empty array, or an empty item) is a 400 with
//! code `invalid_request_error`; with a configured model list, another model is a 404
//! `model_not_found`, as on chat.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use crate::auth::authorize;
use crate::config::DEFAULT_EMBEDDING_DIMENSIONS;
use crate::exchange::{Answer, inference};
use crate::route::Route;
use crate::state::Shared;
use crate::stats::ReportedUsage;

/// Most inputs one request may carry, as OpenAI's limit.
const MAX_INPUTS: usize = 2048;

/// Longest vector one request may ask for.
const MAX_DIMENSIONS: usize = 8192;

pub(crate) async fn embeddings(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    inference(&shared, Route::Embeddings, request, answer).await
}

#[derive(Deserialize)]
struct EmbeddingsRequest {
    model: String,
    /// Optional here so that a missing input gets the same message as an empty one.
    #[serde(default)]
    input: Option<Input>,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<usize>,
}

/// The shapes OpenAI accepts for `input`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

/// One input to embed.
#[derive(Clone, Copy)]
enum Item<'a> {
    Text(&'a str),
    Tokens(&'a [u32]),
}

impl Input {
    fn items(&self) -> Vec<Item<'_>> {
        match self {
            Input::Text(text) => vec![Item::Text(text)],
            Input::Texts(texts) => texts.iter().map(|text| Item::Text(text)).collect(),
            Input::Tokens(tokens) => vec![Item::Tokens(tokens)],
            Input::TokenLists(lists) => lists.iter().map(|tokens| Item::Tokens(tokens)).collect(),
        }
    }
}

impl Item<'_> {
    fn is_empty(self) -> bool {
        match self {
            Item::Text(text) => text.is_empty(),
            Item::Tokens(tokens) => tokens.is_empty(),
        }
    }

    fn tokens(self) -> u64 {
        match self {
            Item::Text(text) => text.split_whitespace().count() as u64,
            Item::Tokens(tokens) => tokens.len() as u64,
        }
    }

    /// FNV-1a over the input, with a leading tag so a string and a token array never collide
    /// by construction.
    fn seed(self) -> u64 {
        let mut hash = Fnv::new();
        match self {
            Item::Text(text) => {
                hash.write(&[0]);
                hash.write(text.as_bytes());
            }
            Item::Tokens(tokens) => {
                hash.write(&[1]);
                for token in tokens {
                    hash.write(&token.to_le_bytes());
                }
            }
        }
        hash.0
    }
}

#[derive(Serialize)]
struct List<'a> {
    object: &'static str,
    data: Vec<Embedding>,
    model: &'a str,
    usage: Usage,
}

#[derive(Serialize)]
struct Embedding {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

/// A vector as floats, or as base64 of little-endian `f32`s.
#[derive(Serialize)]
#[serde(untagged)]
enum Vector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    total_tokens: u64,
}

fn answer(shared: &Shared, headers: &HeaderMap, body: Result<Bytes, Answer>) -> Answer {
    if let Err(answer) = authorize(shared, headers) {
        return answer;
    }
    if !crate::chat::is_json(headers) {
        return Answer::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content-type must be application/json",
            Some("invalid_request_error"),
        );
    }
    let request = match body.and_then(|body| parse(&body)) {
        Ok(request) => request,
        Err(answer) => return answer,
    };
    if shared.model(&request.model).is_err() {
        return crate::models::not_found(&request.model);
    }
    let base64 = request.encoding_format.as_deref() == Some("base64");
    let dimensions = request.dimensions.unwrap_or(DEFAULT_EMBEDDING_DIMENSIONS);
    let items = request.input.as_ref().map(Input::items).unwrap_or_default();
    let prompt_tokens = items.iter().map(|item| item.tokens()).sum();
    let data: Vec<Embedding> = items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let vector = vector(item.seed(), dimensions);
            Embedding {
                object: "embedding",
                index,
                embedding: if base64 {
                    Vector::Base64(encode_base64(&vector))
                } else {
                    Vector::Float(vector)
                },
            }
        })
        .collect();
    crate::stats::Counters::add(&shared.counters.embeddings_inputs, data.len() as u64);
    let list = List {
        object: "list",
        data,
        model: &request.model,
        usage: Usage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        },
    };
    let usage = ReportedUsage {
        input: prompt_tokens,
        output: 0,
    };
    // Serializing plain structs cannot fail.
    Answer::reporting(
        serde_json::to_vec(&list)
            .map(Bytes::from)
            .unwrap_or_default(),
        usage,
    )
}

fn parse(body: &[u8]) -> Result<EmbeddingsRequest, Answer> {
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
    let request: EmbeddingsRequest = serde_json::from_slice(body)
        .map_err(|error| invalid(&format!("invalid request body: {error}")))?;
    let items = request.input.as_ref().map(Input::items).unwrap_or_default();
    if items.is_empty() || items.iter().any(|item| item.is_empty()) {
        return Err(invalid(
            "`input` must be a non-empty string, array of strings or array of tokens",
        ));
    }
    if items.len() > MAX_INPUTS {
        return Err(invalid("`input` must have at most 2048 items"));
    }
    if let Some(format) = &request.encoding_format
        && format != "float"
        && format != "base64"
    {
        return Err(invalid("`encoding_format` must be `float` or `base64`"));
    }
    if let Some(dimensions) = request.dimensions
        && !(1..=MAX_DIMENSIONS).contains(&dimensions)
    {
        return Err(invalid("`dimensions` must be between 1 and 8192"));
    }
    Ok(request)
}

/// A unit vector of `dimensions` components drawn from SplitMix64 seeded with `seed`.
fn vector(seed: u64, dimensions: usize) -> Vec<f32> {
    let mut state = seed;
    let mut vector: Vec<f64> = (0..dimensions)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            // The top 53 bits as a float in [0, 1), moved to [-1, 1).
            (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect();
    let norm = vector.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        for x in &mut vector {
            *x /= norm;
        }
    }
    vector.into_iter().map(|x| x as f32).collect()
}

/// 64-bit FNV-1a: tiny, stable across runs and platforms (std's hashers are neither promised).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xCBF2_9CE4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
}

/// Standard base64 (with padding) of the vector's little-endian `f32`s.
fn encode_base64(vector: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> shift) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{encode_base64, vector};

    #[test]
    fn vectors_are_unit_length_and_deterministic() {
        let a = vector(42, 1024);
        assert_eq!(a.len(), 1024);
        let norm: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
        assert_eq!(a, vector(42, 1024));
        assert_ne!(a, vector(43, 1024));
    }

    #[test]
    fn base64_matches_known_encodings() {
        // 1.0f32 is 00 00 80 3F little-endian.
        assert_eq!(encode_base64(&[1.0]), "AACAPw==");
        assert_eq!(encode_base64(&[1.0, -2.0]), "AACAPwAAAMA=");
        assert_eq!(encode_base64(&[1.0, -2.0, 0.5]), "AACAPwAAAMAAAAA/");
        assert_eq!(encode_base64(&[]), "");
    }
}
