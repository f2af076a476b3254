//! The upstream routes: each request goes through the client's whole tower stack (token,
//! retry, fallback, metrics) with [`EvolutionInference::send`], and the answer comes back as
//! it arrives: a stream chunk by chunk, never gathered.
//!
//! The client's `Authorization` is not forwarded (the stack puts the gateway's token on the
//! upstream request), and no upstream header but a few known ones comes back, so the token
//! cannot reach a client either way.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use evolution_client::token::TokenError;
use evolution_client::{Error, EvolutionInference};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use http_body_util::BodyExt;

use crate::Gateway;
use crate::body;
use crate::error::ApiError;

/// The request id header, set by the gateway when the client sends none.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The most of an upstream error body read to find its message (the transport has read
/// such bodies already, up to the same size).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// An upstream endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    ChatCompletions,
    Embeddings,
    Models,
}

/// The upstream URIs, parsed once.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    chat_completions: Uri,
    embeddings: Uri,
    models: Uri,
}

impl Upstream {
    pub(crate) fn new(client: &EvolutionInference) -> Result<Self, http::uri::InvalidUri> {
        let base = client.base_url();
        Ok(Self {
            chat_completions: format!("{base}/chat/completions").parse()?,
            embeddings: format!("{base}/embeddings").parse()?,
            models: format!("{base}/models").parse()?,
        })
    }

    fn uri(&self, target: Target) -> Uri {
        match target {
            Target::ChatCompletions => self.chat_completions.clone(),
            Target::Embeddings => self.embeddings.clone(),
            Target::Models => self.models.clone(),
        }
    }
}

pub(crate) async fn chat_completions(State(gateway): State<Gateway>, request: Request) -> Response {
    forward(&gateway, Target::ChatCompletions, request).await
}

pub(crate) async fn embeddings(State(gateway): State<Gateway>, request: Request) -> Response {
    forward(&gateway, Target::Embeddings, request).await
}

pub(crate) async fn models(State(gateway): State<Gateway>, request: Request) -> Response {
    forward(&gateway, Target::Models, request).await
}

async fn forward(gateway: &Gateway, target: Target, request: Request) -> Response {
    let inner = &gateway.inner;
    let (parts, incoming) = request.into_parts();
    let request_id = parts.headers.get(X_REQUEST_ID).cloned();
    let (method, body) = if target == Target::Models {
        (Method::GET, Bytes::new())
    } else {
        let read = body::read(incoming, &parts.headers, inner.config.max_body_bytes).await;
        match read.and_then(|bytes| body::prepare(bytes, inner.config.default_model.as_deref())) {
            Ok(bytes) => (Method::POST, bytes),
            Err(error) => return error.into_response(),
        }
    };
    let mut upstream = http::Request::new(body);
    *upstream.method_mut() = method;
    *upstream.uri_mut() = inner.upstream.uri(target);
    if target != Target::Models {
        upstream
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    if let Some(id) = &request_id {
        upstream.headers_mut().insert(X_REQUEST_ID, id.clone());
    }
    match inner.client.send(upstream).await {
        Ok(response) => relay(response, request_id.as_ref()).await,
        Err(error) => {
            let answer = from_client_error(&error);
            tracing::warn!(
                request_id = request_id.as_ref().and_then(|id| id.to_str().ok()),
                status = answer.status.as_u16(),
                %error,
                "upstream call failed"
            );
            answer.into_response()
        }
    }
}

/// An upstream answer, as the client gets it: a success or a client error with its body and
/// status; a server error (after the stack's retries) or a redirect as the gateway's own.
async fn relay(
    response: http::Response<evolution_client::Body>,
    request_id: Option<&HeaderValue>,
) -> Response {
    let (parts, body) = response.into_parts();
    let status = parts.status;
    // A 401 that outlived the stack's refresh and resend is about the gateway's Evolution key,
    // not the client's: passed through, it would send the client looking at its own key.
    if status.is_success() || (status.is_client_error() && status != StatusCode::UNAUTHORIZED) {
        let mut answer = Response::new(Body::new(body));
        *answer.status_mut() = status;
        copy_headers(&parts.headers, answer.headers_mut());
        return answer;
    }
    let message = error_message(body, status).await;
    let answer = match status.as_u16() {
        401 => ApiError::upstream(format!(
            "the Evolution API refused the gateway's token even after a refresh ({message}): the gateway's key (EVOLUTION_KEY_ID) lacks access; tell the gateway's operator"
        )),
        503 => ApiError::unavailable(format!(
            "the Evolution API is unavailable (503 after the gateway's retries): {message}"
        )),
        300..=399 => ApiError::upstream(format!(
            "the Evolution API answered {status}, a redirect, which the gateway does not follow: check EVOLUTION_BASE_URL"
        )),
        _ => ApiError::upstream(format!(
            "the Evolution API answered {status} after the gateway's retries: {message}"
        )),
    };
    tracing::warn!(
        request_id = request_id.and_then(|id| id.to_str().ok()),
        upstream_status = status.as_u16(),
        status = answer.status.as_u16(),
        "upstream error"
    );
    let mut answer = answer.into_response();
    for name in [RETRY_AFTER, RETRY_AFTER_MS] {
        if let Some(wait) = parts.headers.get(&name) {
            answer.headers_mut().insert(name, wait.clone());
        }
    }
    answer
}

/// OpenAI's millisecond form of `Retry-After`, which its SDKs read first.
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");

/// The upstream headers a client may see: the body's type, when to retry, rate limits.
fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for name in [CONTENT_TYPE, RETRY_AFTER, RETRY_AFTER_MS, CACHE_CONTROL] {
        if let Some(value) = from.get(&name) {
            to.insert(name, value.clone());
        }
    }
    for (name, value) in from {
        if name.as_str().starts_with("x-ratelimit-") {
            to.append(name.clone(), value.clone());
        }
    }
}

/// The `error.message` of an OpenAI-shaped error body, else the status's reason.
async fn error_message(body: evolution_client::Body, status: StatusCode) -> String {
    let fallback = || {
        status
            .canonical_reason()
            .unwrap_or("no reason given")
            .to_owned()
    };
    // By hand rather than `Limited::collect`: that future's error type trips the compiler's
    // `Send` proof for axum handlers ("implementation of `From` is not general enough").
    let mut body = body;
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map(http_body::Frame::into_data) else {
            return fallback();
        };
        if let Ok(data) = data {
            if bytes.len() + data.len() > MAX_ERROR_BODY {
                return fallback();
            }
            bytes.extend_from_slice(&data);
        }
    }
    let value: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(value) => value,
        Err(_) => return fallback(),
    };
    value
        .pointer("/error/message")
        .or_else(|| value.get("message"))
        .and_then(serde_json::Value::as_str)
        .map_or_else(fallback, str::to_owned)
}

/// What a client sees when the stack gave up before an answer.
pub(crate) fn from_client_error(error: &Error) -> ApiError {
    match error {
        Error::Timeout(_) => ApiError::timeout(error.to_string()),
        Error::Auth(TokenError::Deadline { .. }) => ApiError::timeout(error.to_string()),
        Error::Auth(token) if token.is_transient() => {
            let answer = ApiError::unavailable(format!(
                "the gateway cannot obtain an Evolution token now: {error}"
            ));
            match token.retry_after() {
                Some(wait) => answer.retry_after(wait),
                None => answer,
            }
        }
        Error::Unavailable(unavailable) => {
            ApiError::unavailable(error.to_string()).retry_after(unavailable.ready_in)
        }
        Error::Auth(_) | Error::KeysRejected(_) => ApiError::upstream(format!(
            "the gateway's Evolution key does not work: {error}; tell the gateway's operator"
        )),
        Error::QuotaExhausted { status, .. } => ApiError::new(
            *status,
            "insufficient_quota",
            "insufficient_quota",
            error.to_string(),
        ),
        Error::RetryAfterTooLong {
            status,
            retry_after,
            ..
        } => ApiError::new(*status, "api_error", "upstream_error", error.to_string())
            .retry_after(*retry_after),
        _ => ApiError::upstream(error.to_string()),
    }
}
