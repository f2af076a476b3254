//! Behaviour of the fallback layer: the state machine step by step with `tower-test` mocks on
//! tokio's paused clock, and whole stacks (an auth layer per key over reqwest) against the
//! in-process emulator.

mod both_rejected;
mod events;
mod failback;
mod readiness;
mod rotation;
mod stack;
mod switching;

use std::sync::{Arc, Mutex};

use evolution_fallback::{Fallback, FallbackEvent, FallbackObserver, SwitchPolicy};
use evolution_token::BoxError;
use futures_util::FutureExt;
use http::{Request, Response, StatusCode};
use tokio::task::JoinHandle;
use tower::ServiceExt;
use tower_test::mock::{self, Mock};

pub(crate) type Req = Request<&'static str>;
pub(crate) type Res = Response<&'static str>;
pub(crate) type Side = Mock<Req, Res>;
pub(crate) type MockHandle = mock::Handle<Req, Res>;

/// A fallback over two mocks, and the mocks' handles.
pub(crate) fn mocks() -> (Fallback<Side, Side>, MockHandle, MockHandle) {
    let (primary, p) = mock::pair();
    let (backup, b) = mock::pair();
    (Fallback::new(primary, backup), p, b)
}

pub(crate) fn answer(status: u16, body: &'static str) -> Res {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
}

/// Starts one call in its own task.
pub(crate) fn call<S>(service: &S, body: &'static str) -> JoinHandle<Result<Res, BoxError>>
where
    S: tower::Service<Req, Response = Res, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    let request = Request::post("http://evolution.test/chat/completions")
        .header("x-request", body)
        .body(body)
        .unwrap();
    tokio::spawn(service.clone().oneshot(request))
}

/// Takes the next request that reached `side` and answers it; returns the request's body.
pub(crate) async fn reply(side: &mut MockHandle, response: Res) -> &'static str {
    let (request, send) = side.next_request().await.expect("a request");
    send.send_response(response);
    *request.body()
}

/// Takes the next request that reached `side` and fails it with `error`.
pub(crate) async fn fail(side: &mut MockHandle, error: impl Into<BoxError>) -> &'static str {
    let (request, send) = side.next_request().await.expect("a request");
    send.send_error(error);
    *request.body()
}

/// Asserts that no request is waiting at `side` (after letting spawned tasks run).
pub(crate) async fn assert_idle(side: &mut MockHandle) {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        side.next_request().now_or_never().is_none(),
        "no request expected here"
    );
}

/// Records every event.
#[derive(Clone, Default)]
pub(crate) struct Recorder(Arc<Mutex<Vec<FallbackEvent>>>);

impl Recorder {
    pub(crate) fn events(&self) -> Vec<FallbackEvent> {
        self.0.lock().unwrap().clone()
    }
}

impl FallbackObserver for Recorder {
    fn on_event(&self, event: &FallbackEvent) {
        self.0.lock().unwrap().push(*event);
    }
}

/// A fallback over two mocks with `policy`.
pub(crate) fn mocks_with<Pol: SwitchPolicy>(
    policy: Pol,
) -> (Fallback<Side, Side, Pol>, MockHandle, MockHandle) {
    let (service, p, b) = mocks();
    (service.policy(policy), p, b)
}
