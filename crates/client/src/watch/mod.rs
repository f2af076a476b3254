//! What [`EvolutionInference::send`](crate::EvolutionInference::send) sees of the calls it
//! carries: the model, the tokens, the time to the first chunk, as the typed methods see
//! them, without holding the answer back.
//!
//! A request you send is looked at once: a `POST` to `…/chat/completions` or `…/embeddings`
//! whose body is a JSON object is a chat or embeddings call, with its own span and GenAI
//! record ([`Operation`]). Its answer's body is then watched as it passes:
//!
//! - an event stream ([`events`]) event by event: each chunk's time, and the usage chunk;
//! - a JSON answer ([`json`]) by its first and last bytes: the `model` near its start and
//!   the `usage` near its end, where OpenAI-compatible servers put them.
//!
//! A streamed chat request that does not ask for its usage is asked for it
//! (`stream_options.include_usage`, see [`stream_usage`](crate::stream_usage)), so that its
//! tokens are counted, and the usage-only chunk this adds is taken out of the stream: the
//! caller gets exactly the events it asked for.

pub(crate) mod events;
pub(crate) mod json;

use bytes::Bytes;
use http::{Method, Request};
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::operation::Kind;

/// What a request sent through `send` is, as far as the watch goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Watched {
    pub(crate) kind: Kind,
    /// The model the body names (empty when it names none).
    pub(crate) model: String,
    /// `stream: true`.
    pub(crate) stream: bool,
    /// The body has a `stream_options` of its own: it is left as it is.
    pub(crate) has_stream_options: bool,
}

impl Watched {
    /// What `request` is: `None` for anything but a chat or embeddings call with a JSON
    /// object body.
    pub(crate) fn of(request: &Request<Bytes>) -> Option<Self> {
        if request.method() != Method::POST {
            return None;
        }
        let path = request.uri().path().trim_end_matches('/');
        let kind = if path.ends_with("/chat/completions") {
            Kind::Chat
        } else if path.ends_with("/embeddings") {
            Kind::Embeddings
        } else {
            return None;
        };
        /// Only these members are read; the rest is skipped (but still checked as JSON).
        #[derive(Deserialize)]
        struct Probe {
            #[serde(default)]
            model: Option<String>,
            #[serde(default)]
            stream: Option<bool>,
            #[serde(default)]
            stream_options: Option<IgnoredAny>,
        }
        let body = request.body();
        if body.trim_ascii_start().first() != Some(&b'{') {
            return None;
        }
        let probe: Probe = serde_json::from_slice(body).ok()?;
        Some(Self {
            kind,
            model: probe.model.unwrap_or_default(),
            stream: kind == Kind::Chat && probe.stream == Some(true),
            has_stream_options: probe.stream_options.is_some(),
        })
    }

    /// Whether the client adds `stream_options.include_usage`, and takes the usage chunk
    /// out of the answer.
    pub(crate) fn asks_usage(&self) -> bool {
        self.stream && !self.has_stream_options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched(method: Method, path: &str, body: &str) -> Option<Watched> {
        let request = Request::builder()
            .method(method)
            .uri(format!("http://api{path}"))
            .body(Bytes::copy_from_slice(body.as_bytes()))
            .unwrap();
        Watched::of(&request)
    }

    #[test]
    fn chat_and_embeddings_calls_are_recognised() {
        let chat = watched(
            Method::POST,
            "/v1/chat/completions",
            r#"{"model":"m","messages":[],"stream":true}"#,
        )
        .unwrap();
        assert_eq!(chat.kind, Kind::Chat);
        assert_eq!(chat.model, "m");
        assert!(chat.stream && chat.asks_usage());

        let own = watched(
            Method::POST,
            "/v1/chat/completions",
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":false}}"#,
        )
        .unwrap();
        assert!(own.stream && !own.asks_usage());

        let embeddings = watched(Method::POST, "/v1/embeddings", r#"{"input":"a"}"#).unwrap();
        assert_eq!(embeddings.kind, Kind::Embeddings);
        assert_eq!(embeddings.model, "");
        assert!(!embeddings.asks_usage());
    }

    #[test]
    fn anything_else_is_not_watched() {
        assert_eq!(watched(Method::GET, "/v1/models", ""), None);
        assert_eq!(watched(Method::POST, "/v1/files", "{}"), None);
        assert_eq!(watched(Method::POST, "/v1/chat/completions", "[1]"), None);
        assert_eq!(watched(Method::POST, "/v1/chat/completions", "{"), None);
        assert_eq!(
            watched(Method::POST, "/v1/chat/completions", r#"{"model":1}"#),
            None
        );
    }
}
