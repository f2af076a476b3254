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

/// reqwest's response future, named through its `Service` impl (the type itself is private).
type Pending = <reqwest::Client as Service<reqwest::Request>>::Future;

/// The response body type of every service in the stack: streamed, boxed.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Sends `http::Request<Bytes>` with a [`reqwest::Client`] (rustls, connection pool)
/// and answers `http::Response<Body>` with the body still streaming.
///
/// Use it to build your own stack:
///
/// ```
/// use evolution_client::HttpTransport;
/// use tower::ServiceBuilder;
/// use std::time::Duration;
///
/// let transport = ServiceBuilder::new()
///     .timeout(Duration::from_secs(60))
///     .service(HttpTransport::new(reqwest::Client::new()));
/// # drop(transport);
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
        match reqwest::Request::try_from(request) {
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
        Failed { error: Option<BoxError> },
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Sending { future } => {
                let response = ready!(future.poll(cx))?;
                let response: Response<reqwest::Body> = response.into();
                Poll::Ready(Ok(response.map(|body| body.map_err(BoxError::from).boxed())))
            }
            StateProj::Failed { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "transport future polled after completion".into()))),
        }
    }
}
