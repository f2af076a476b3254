//! `reqwest::Client` as a tower service: the bottom of the stack.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use evolution_token::BoxError;
use http::{Request, Response};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use tower::Service;

use crate::{error_body, recent_urls};

/// reqwest's response future, named through its `Service` impl (the type itself is private).
type Pending = <reqwest::Client as Service<reqwest::Request>>::Future;

/// The response body type of every service in the stack: streamed, boxed.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Sends `http::Request<Bytes>` with a [`reqwest::Client`] (rustls, connection pool)
/// and answers `http::Response<Body>` with the body still streaming.
///
/// Requests carry the bearer token: give it a client that follows no redirect, as the
/// one [`EvolutionInferenceBuilder::build`](crate::EvolutionInferenceBuilder::build)
/// makes does (reqwest's default follows up to 10, resending the body on 307 and 308).
///
/// The body of an error answer (4xx, 5xx) is read first, when it is at most
/// [`MAX_ERROR_BODY_BYTES`](evolution_retry::MAX_ERROR_BODY_BYTES), and left in the response's
/// extensions as an [`ErrorBody`](evolution_retry::ErrorBody) (the body replays the same
/// bytes), so that the retry layer can tell a quota that is exhausted from a rate limit. A
/// transport of your own should do the same for that distinction.
///
/// Use it to build your own stack:
///
/// ```
/// use evolution_client::HttpTransport;
/// use tower::ServiceBuilder;
/// use std::time::Duration;
///
/// let client = reqwest::Client::builder()
///     .redirect(reqwest::redirect::Policy::none())
///     .build()?;
/// let transport = ServiceBuilder::new()
///     .timeout(Duration::from_secs(60))
///     .service(HttpTransport::new(client));
/// # drop(transport);
/// # Ok::<(), reqwest::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
}

impl HttpTransport {
    /// Sends with `client`.
    pub fn new(client: reqwest::Client) -> Self {
        Self { client }
    }

    /// The underlying client.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

impl Service<Request<Bytes>> for HttpTransport {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // reqwest queues internally; its pool has no readiness to report.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        match to_reqwest(request) {
            Ok(request) => ResponseFuture {
                state: State::Sending {
                    future: Service::call(&mut self.client, request),
                },
            },
            Err(error) => ResponseFuture {
                state: State::Failed {
                    error: Some(error.into()),
                },
            },
        }
    }
}

/// `request` as reqwest's own request type.
///
/// reqwest's `TryFrom` parses the URI afresh for every request; this reuses the thread's
/// recent parse of the same URI (see `recent_urls`). reqwest keeps a request's extensions
/// in a field it alone can set, so a request carrying any goes through `TryFrom`, as does
/// one whose URI does not parse (reqwest's error then says why).
fn to_reqwest(request: Request<Bytes>) -> Result<reqwest::Request, reqwest::Error> {
    let url = if request.extensions().is_empty() {
        recent_urls::url_of(request.uri())
    } else {
        None
    };
    let Some(url) = url else {
        return reqwest::Request::try_from(request);
    };
    let (parts, body) = request.into_parts();
    let mut converted = reqwest::Request::new(parts.method, url);
    *converted.headers_mut() = parts.headers;
    *converted.version_mut() = parts.version;
    *converted.body_mut() = Some(body.into());
    Ok(converted)
}

pin_project! {
    /// Response future of [`HttpTransport`].
    #[derive(Debug)]
    pub struct ResponseFuture {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State {
        Sending { #[pin] future: Pending },
        // Only for error answers: their body is read before the retry layer sees them.
        Buffering { future: error_body::Buffering },
        Failed { error: Option<BoxError> },
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Sending { future } => {
                    let response = ready!(future.poll(cx))?;
                    let response: Response<reqwest::Body> = response.into();
                    let response = response.map(|body| body.map_err(BoxError::from).boxed());
                    if !error_body::is_error(response.status()) {
                        return Poll::Ready(Ok(response));
                    }
                    let future = error_body::Buffering::new(response);
                    this.state.set(State::Buffering { future });
                }
                StateProj::Buffering { future } => {
                    return Poll::Ready(Ok(ready!(Pin::new(future).poll(cx))));
                }
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(error
                        .take()
                        .unwrap_or_else(|| "transport future polled after completion".into())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use evolution_emulator::{DEMO_KEY_ID, DEMO_MODEL, DEMO_SECRET, Emulator};
    use evolution_token::{Credentials, TokenManager};
    use http::{Method, Uri};
    use tower::ServiceExt;

    use super::*;

    /// A GET of the model list with a token, with or without an extension.
    async fn models(emu: &Emulator, extension: bool) -> Result<Response<Body>, BoxError> {
        let tokens = TokenManager::builder(Credentials::new(DEMO_KEY_ID, DEMO_SECRET))
            .auth_url(emu.auth_url())
            .build()?;
        let mut request = Request::new(Bytes::new());
        *request.method_mut() = Method::GET;
        *request.uri_mut() = format!("{}/models", emu.base_url()).parse()?;
        let bearer = tokens.get_token().await?.bearer_header();
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, bearer);
        if extension {
            request.extensions_mut().insert("kept");
        }
        HttpTransport::new(reqwest::Client::new())
            .oneshot(request)
            .await
    }

    #[tokio::test]
    async fn sends_requests_with_and_without_extensions_alike() {
        let emu = Emulator::builder().start().await.unwrap();
        for extension in [false, false, true] {
            let response = models(&emu, extension).await.unwrap();
            assert_eq!(response.status(), 200, "extension: {extension}");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let text = std::str::from_utf8(&body).unwrap();
            assert!(text.contains(DEMO_MODEL), "{text}");
        }
        assert_eq!(emu.stats().models_requests, 3);
    }

    #[tokio::test]
    async fn a_uri_reqwest_cannot_send_to_is_reqwests_builder_error() {
        let mut request = Request::new(Bytes::new());
        *request.uri_mut() = Uri::from_static("/v1/models");
        let error = HttpTransport::new(reqwest::Client::new())
            .oneshot(request)
            .await
            .unwrap_err();
        let error = error.downcast::<reqwest::Error>().unwrap();
        assert!(error.is_builder(), "{error}");
    }
}
