//! Asking a streamed completion for its token usage, and doing without where the server
//! refuses to be asked.
//!
//! An OpenAI-compatible server reports a stream's usage only when the request says
//! `"stream_options": {"include_usage": true}`: it then sends one last chunk with the usage
//! and no choices. Most servers (OpenAI, vLLM, Evolution) take the option; a few older ones
//! answer `400` naming it (`Unrecognized request argument supplied: stream_options`).
//!
//! [`StreamUsage`] sits in each key's stack, where the request's URI is final (a pool's
//! deployment may have its own base URL). A request marked [`AskUsage`] gets the option
//! spliced into its body, unless that URI is known to refuse it. A `400` or `422` whose body
//! names `stream_options` is answered by sending the request again as it was; if that one
//! is not refused, the URI is marked: the call costs one extra round trip, once per URI and
//! process, and then goes without usage. (An error that quotes the whole request, option
//! included, costs the extra round trip and marks nothing.)

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use evolution_retry::ErrorBody;
use evolution_token::BoxError;
use futures_util::future::Either;
use http::header::CONTENT_LENGTH;
use http::{Request, Response, StatusCode, Uri};
use tower::{Layer, Service, ServiceExt};

use crate::{Body, error_body};

/// A request extension: splice `"stream_options":{"include_usage":true}` into this
/// request's body (a JSON object without a `stream_options` member of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AskUsage;

/// The member spliced in, with the comma that follows it when the object has other members.
const OPTION: &[u8] = br#""stream_options":{"include_usage":true}"#;

/// The most URIs remembered as refusing: past it, new ones are still handled, with a resend
/// each time.
const MAX_REMEMBERED: usize = 256;

/// The URIs known to refuse `stream_options`, shared by every key's stack of one client.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    uris: RwLock<HashSet<Uri>>,
}

impl Refusals {
    fn refuses(&self, uri: &Uri) -> bool {
        // Poisoning cannot leave the set half-changed: an insert is one call.
        let uris = self.uris.read().unwrap_or_else(|e| e.into_inner());
        !uris.is_empty() && uris.contains(uri)
    }

    fn remember(&self, uri: &Uri) {
        let mut uris = self.uris.write().unwrap_or_else(|e| e.into_inner());
        if uris.len() < MAX_REMEMBERED && uris.insert(uri.clone()) {
            tracing::warn!(
                uri = %uri,
                "the server refuses `stream_options`: streams to it are sent without it, and their token usage is not counted"
            );
        }
    }
}

/// The layer of [`StreamUsage`].
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamUsageLayer {
    refusals: Arc<Refusals>,
}

impl StreamUsageLayer {
    pub(crate) fn new(refusals: Arc<Refusals>) -> Self {
        Self { refusals }
    }
}

impl<S> Layer<S> for StreamUsageLayer {
    type Service = StreamUsage<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StreamUsage {
            inner,
            refusals: Arc::clone(&self.refusals),
        }
    }
}

/// Splices `stream_options.include_usage` into requests marked [`AskUsage`]; see the
/// [module docs](self).
#[derive(Debug, Clone)]
pub(crate) struct StreamUsage<S> {
    inner: S,
    refusals: Arc<Refusals>,
}

type Asking = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

impl<S> Service<Request<Bytes>> for StreamUsage<S>
where
    S: Service<Request<Bytes>, Response = Response<Body>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Either<S::Future, Asking>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        if request.extensions().get::<AskUsage>().is_none() || self.refusals.refuses(request.uri())
        {
            return Either::Left(self.inner.call(request));
        }
        let Some(asking) = with_option(request.body()) else {
            return Either::Left(self.inner.call(request));
        };
        let plain = request.clone();
        let (mut parts, _) = request.into_parts();
        // The body grew: a length the caller set would cut it short.
        parts.headers.remove(CONTENT_LENGTH);
        let sent = self.inner.call(Request::from_parts(parts, asking));
        // The resend, if any, goes through a clone that was not polled ready: `oneshot`
        // readies it (take the ready one for the first call, as tower's own `Retry` does).
        let again = self.inner.clone();
        let refusals = Arc::clone(&self.refusals);
        Either::Right(Box::pin(async move {
            let response = sent.await?;
            if !is_refusal_status(response.status()) {
                return Ok(response);
            }
            // `HttpTransport` has buffered the error body already; a transport of the
            // caller's own may not have, and `buffer` does it then (bodies of at most
            // `MAX_ERROR_BODY_BYTES`, replayed to the caller as they came).
            let response = if response.extensions().get::<ErrorBody>().is_some() {
                response
            } else {
                error_body::buffer(response).await
            };
            let refused = response
                .extensions()
                .get::<ErrorBody>()
                .is_some_and(|body| mentions_stream_options(body.bytes()));
            if !refused {
                return Ok(response);
            }
            // Most likely a refusal of the option; perhaps an error that quotes the whole
            // body. Sent again without it, the answer says which: the endpoint is marked
            // only if that one is not refused too.
            let uri = plain.uri().clone();
            let response = again.oneshot(plain).await?;
            if !is_refusal_status(response.status()) {
                refusals.remember(&uri);
            }
            Ok(response)
        }))
    }
}

/// `body` with the option as its first member; `None` if it is not a JSON object.
fn with_option(body: &Bytes) -> Option<Bytes> {
    let open = body.iter().position(|byte| !byte.is_ascii_whitespace())?;
    if body[open] != b'{' {
        return None;
    }
    let rest = &body[open + 1..];
    let empty = rest
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|byte| *byte == b'}');
    let mut spliced = BytesMut::with_capacity(body.len() + OPTION.len() + 1);
    spliced.extend_from_slice(&body[..=open]);
    spliced.extend_from_slice(OPTION);
    if !empty {
        spliced.extend_from_slice(b",");
    }
    spliced.extend_from_slice(rest);
    Some(spliced.freeze())
}

/// The statuses servers refuse an unknown member with: 400 (OpenAI, vLLM), 422 (FastAPI's
/// and axum's validation).
fn is_refusal_status(status: StatusCode) -> bool {
    status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY
}

fn mentions_stream_options(body: &[u8]) -> bool {
    body.windows(b"stream_options".len())
        .any(|window| window == b"stream_options")
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full};

    use super::*;

    fn full(bytes: Bytes) -> Body {
        Full::new(bytes).map_err(|never| match never {}).boxed()
    }

    fn spliced(body: &str) -> Option<serde_json::Value> {
        with_option(&Bytes::copy_from_slice(body.as_bytes()))
            .map(|bytes| serde_json::from_slice(&bytes).expect("still JSON"))
    }

    #[test]
    fn the_option_is_spliced_into_any_object() {
        for body in [
            r#"{"model":"m","stream":true}"#,
            r#"  { "model" : "m" }"#,
            "{}",
            " { \n } ",
        ] {
            let value = spliced(body).unwrap_or_else(|| panic!("{body}"));
            assert_eq!(
                value["stream_options"],
                serde_json::json!({"include_usage": true}),
                "{body}"
            );
        }
        let value = spliced(r#"{"model":"m","stream":true}"#).unwrap();
        assert_eq!(value["model"], "m");
        assert_eq!(value["stream"], true);
    }

    #[test]
    fn a_body_that_is_not_an_object_is_left_alone() {
        for body in ["", "  ", "[1]", "null", "\"{\""] {
            assert!(with_option(&Bytes::copy_from_slice(body.as_bytes())).is_none());
        }
    }

    type Server = tower::util::BoxCloneSyncService<Request<Bytes>, Response<Body>, BoxError>;

    /// Per request: whether it asked for usage, and the length it declared.
    type Seen = Arc<std::sync::Mutex<Vec<(bool, Option<String>)>>>;

    /// A server that answers `status` with `error` to a body with `stream_options` (every
    /// body if `always`), 200 otherwise; counts the requests and the lengths they declared.
    fn server(status: u16, error: &'static str, always: bool) -> (Server, Seen) {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let service = tower::service_fn(move |request: Request<Bytes>| {
            let asked = mentions_stream_options(request.body());
            let length = request
                .headers()
                .get(CONTENT_LENGTH)
                .map(|value| value.to_str().unwrap().to_owned());
            log.lock().unwrap().push((asked, length));
            let status = if asked || always { status } else { 200 };
            let body = if status == 200 { "{}" } else { error };
            async move {
                let mut response = Response::new(full(Bytes::from_static(body.as_bytes())));
                *response.status_mut() = StatusCode::from_u16(status).unwrap();
                Ok::<_, BoxError>(response)
            }
        });
        (Server::new(service), seen)
    }

    fn streamed() -> Request<Bytes> {
        let body = Bytes::from_static(br#"{"model":"m","stream":true}"#);
        let mut request = Request::post("http://api/v1/chat/completions")
            .header(CONTENT_LENGTH, body.len())
            .body(body)
            .unwrap();
        request.extensions_mut().insert(AskUsage);
        request
    }

    #[tokio::test]
    async fn a_refusal_is_learnt_once_and_the_option_is_no_longer_sent() {
        let (server, seen) = server(
            400,
            r#"{"error":{"message":"Unrecognized request argument supplied: stream_options","param":"stream_options"}}"#,
            false,
        );
        let mut layer = StreamUsageLayer::default().layer(server);
        for _ in 0..3 {
            let response = layer.ready().await.unwrap().call(streamed()).await.unwrap();
            assert_eq!(response.status(), 200);
        }
        let seen = seen.lock().unwrap().clone();
        let asked: Vec<bool> = seen.iter().map(|(asked, _)| *asked).collect();
        assert_eq!(asked, [true, false, false, false]);
        // The spliced body is longer: the caller's length went with it.
        assert_eq!(seen[0].1, None);
        assert_eq!(seen[1].1.as_deref(), Some("27"));
    }

    #[tokio::test]
    async fn an_error_that_quotes_the_request_marks_nothing() {
        // A validation error quoting the whole body, option included: refused without it too.
        let (server, seen) = server(
            422,
            r#"{"detail":[{"msg":"bad role","input":{"stream_options":{"include_usage":true}}}]}"#,
            true,
        );
        let mut layer = StreamUsageLayer::default().layer(server);
        for _ in 0..2 {
            let response = layer.ready().await.unwrap().call(streamed()).await.unwrap();
            assert_eq!(response.status(), 422);
        }
        let asked: Vec<bool> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|(asked, _)| *asked)
            .collect();
        assert_eq!(asked, [true, false, true, false], "asked again each time");
    }

    #[tokio::test]
    async fn another_400_comes_back_whole_and_unrepeated() {
        let error = r#"{"error":{"message":"model not found"}}"#;
        let (server, seen) = server(400, error, true);
        let mut layer = StreamUsageLayer::default().layer(server);
        let response = layer.ready().await.unwrap().call(streamed()).await.unwrap();
        assert_eq!(response.status(), 400);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, error.as_bytes());
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[test]
    fn refusals_are_remembered_per_uri() {
        let refusals = Refusals::default();
        let a: Uri = "http://a/v1/chat/completions".parse().unwrap();
        let b: Uri = "http://b/v1/chat/completions".parse().unwrap();
        assert!(!refusals.refuses(&a));
        refusals.remember(&a);
        assert!(refusals.refuses(&a));
        assert!(!refusals.refuses(&b));
    }
}
