//! [`ToDeployment`]: sends a request meant for the client's endpoint and model to a
//! deployment's own.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Uri};
use tower::Service;

/// What a deployment changes in a request: the base URL and the default model.
#[derive(Debug, Clone, Default)]
pub(crate) struct Retarget {
    /// The client's base URL and the deployment's, both without a trailing slash.
    pub(crate) base: Option<(Arc<str>, Arc<str>)>,
    /// The client's model and the deployment's.
    pub(crate) model: Option<(Arc<str>, Arc<str>)>,
}

/// A deployment's key stack behind its [`Retarget`]. Passes requests through untouched when
/// the deployment has no endpoint or model of its own.
#[derive(Debug, Clone)]
pub(crate) struct ToDeployment<S> {
    inner: S,
    retarget: Arc<Retarget>,
}

impl<S> ToDeployment<S> {
    pub(crate) fn new(inner: S, retarget: Retarget) -> Self {
        Self {
            inner,
            retarget: Arc::new(retarget),
        }
    }
}

impl<S> Service<Request<Bytes>> for ToDeployment<S>
where
    S: Service<Request<Bytes>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Bytes>) -> Self::Future {
        if let Some((from, to)) = &self.retarget.base
            && let Some(uri) = rebase(request.uri(), from, to)
        {
            *request.uri_mut() = uri;
        }
        if let Some((from, to)) = &self.retarget.model
            && let Some(body) = remodel(request.body(), from, to)
        {
            *request.body_mut() = body;
        }
        self.inner.call(request)
    }
}

/// `uri` with the base `from` replaced by `to`, if it starts with `from`.
fn rebase(uri: &Uri, from: &str, to: &str) -> Option<Uri> {
    let text = uri.to_string();
    let rest = text.strip_prefix(from)?;
    format!("{to}{rest}").parse().ok()
}

/// The JSON request `body` with `"model": from` replaced by `to`, if it names `from`. A
/// request for another model (an embedding model, say) goes as it is.
fn remodel(body: &Bytes, from: &str, to: &str) -> Option<Bytes> {
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let model = value.get_mut("model")?;
    if model.as_str()? != from {
        return None;
    }
    *model = serde_json::Value::String(to.to_owned());
    serde_json::to_vec(&value).ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_is_replaced_and_the_path_kept() {
        let uri: Uri = "http://127.0.0.1:1/v1/chat/completions".parse().unwrap();
        let moved = rebase(&uri, "http://127.0.0.1:1/v1", "https://eu.example/api/v1").unwrap();
        assert_eq!(moved, "https://eu.example/api/v1/chat/completions");
        assert_eq!(rebase(&uri, "http://other/v1", "https://x/v1"), None);
    }

    #[test]
    fn only_the_default_model_is_replaced() {
        let body = Bytes::from_static(br#"{"model":"m","messages":[]}"#);
        let moved = remodel(&body, "m", "big").unwrap();
        let value: serde_json::Value = serde_json::from_slice(&moved).unwrap();
        assert_eq!(value["model"], "big");
        assert_eq!(remodel(&body, "other", "big"), None);
        assert_eq!(remodel(&Bytes::from_static(b"not json"), "m", "big"), None);
    }
}
