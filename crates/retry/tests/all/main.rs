//! Behaviour of the retry layer: step by step over `tower-test` mocks on tokio's paused clock,
//! then end to end against the in-process emulator, through tower and reqwest-middleware.

mod attempts;
#[cfg(feature = "backoff")]
mod backoff_crate;
mod budget;
mod certificates;
mod classification;
mod emulator;
mod jitter;
mod middleware;
mod properties;
mod retry_after;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use evolution_retry::{BoxError, Retry, RetryConfig, RetryEvent, RetryLayer, RetryPolicy};
use http::{Request, Response};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};
use tower_test::mock::{self, Handle, Mock};

pub(crate) type Req = Request<Bytes>;
pub(crate) type Res = Response<Bytes>;
pub(crate) type Mocked<C = evolution_retry::DefaultClassifier> =
    Retry<RetryPolicy<C>, Mock<Req, Res>>;

pub(crate) fn request() -> Req {
    Request::post("http://backend.test/v1/chat/completions")
        .body(Bytes::from_static(b"{}"))
        .unwrap()
}

/// What the mock backend answers to one attempt.
pub(crate) enum Answer {
    Response(Res),
    Error(BoxError),
}

pub(crate) fn status(code: u16) -> Answer {
    Answer::Response(Response::builder().status(code).body(Bytes::new()).unwrap())
}

pub(crate) fn status_with(code: u16, name: &str, value: &str) -> Answer {
    Answer::Response(
        Response::builder()
            .status(code)
            .header(name, value)
            .body(Bytes::new())
            .unwrap(),
    )
}

pub(crate) fn error(error: impl Into<BoxError>) -> Answer {
    Answer::Error(error.into())
}

/// Records what observers are told.
#[derive(Clone, Default)]
pub(crate) struct Events(Arc<Mutex<Vec<RetryEvent>>>);

impl Events {
    pub(crate) fn observer(&self) -> impl Fn(&RetryEvent) + Send + Sync + 'static {
        let events = self.0.clone();
        move |event: &RetryEvent| events.lock().unwrap().push(*event)
    }

    pub(crate) fn take(&self) -> Vec<RetryEvent> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// A retry service over a mock backend.
pub(crate) fn mocked(layer: &RetryLayer) -> (Mocked, Handle<Req, Res>) {
    let (backend, handle) = mock::pair();
    (layer.layer(backend), handle)
}

/// One call and what the backend saw.
pub(crate) struct Outcome {
    pub(crate) result: Result<Res, BoxError>,
    /// When each attempt reached the backend (each is answered at once).
    pub(crate) attempts: Vec<Instant>,
    /// When the call returned.
    pub(crate) returned: Instant,
}

impl Outcome {
    pub(crate) fn status(&self) -> u16 {
        self.result.as_ref().expect("a response").status().as_u16()
    }

    /// The waits between consecutive attempts.
    pub(crate) fn gaps(&self) -> Vec<std::time::Duration> {
        self.attempts.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

/// Sends one request through `service`, answering the attempts with `answers` in order.
pub(crate) async fn call<C>(
    service: Mocked<C>,
    handle: &mut Handle<Req, Res>,
    answers: impl IntoIterator<Item = Answer>,
) -> Outcome
where
    C: evolution_retry::Classify + Clone + Send + 'static,
{
    let mut answers = answers.into_iter();
    let mut call = tokio::spawn(service.oneshot(request()));
    let mut attempts = Vec::new();
    loop {
        tokio::select! {
            biased;
            result = &mut call => {
                return Outcome { result: result.unwrap(), attempts, returned: Instant::now() };
            }
            next = handle.next_request() => {
                let (_, reply) = next.expect("the service is alive while the call runs");
                attempts.push(Instant::now());
                match answers.next().expect("an answer for every attempt") {
                    Answer::Response(response) => reply.send_response(response),
                    Answer::Error(error) => reply.send_error(error),
                }
            }
        }
    }
}

/// [`call`] on a fresh service from a layer built with `config`.
pub(crate) async fn run(config: RetryConfig, answers: impl IntoIterator<Item = Answer>) -> Outcome {
    let (service, mut handle) = mocked(&RetryLayer::new(config));
    call(service, &mut handle, answers).await
}

/// Every answer the same.
pub(crate) fn always(code: u16) -> impl Iterator<Item = Answer> {
    std::iter::repeat_with(move || status(code))
}
