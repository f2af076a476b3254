//! An API of the tests' own. `POST /v1/chat/completions`: every answer is an SSE stream
//! that sends [`FIRST`], then waits until the test calls [`Upstream::release`] before it
//! sends [`REST`]. `POST /v1/embeddings`: [`EMBEDDINGS`] with a `set-cookie` and an
//! `x-ratelimit-remaining-requests` header. `GET /v1/models`: no answer at all until
//! [`Upstream::release`] (then an empty list). It records the path, headers and body of every
//! request, and says how each chat stream ended (sent in full, or dropped before its end).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use http::HeaderMap;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The first event, sent at once.
pub(crate) const FIRST: &str = "data: {\"n\":1}\n\n";
/// The events sent after [`Upstream::release`].
pub(crate) const REST: [&str; 2] = ["data: {\"n\":2}\n\n", "data: [DONE]\n\n"];

/// The embeddings answer.
pub(crate) const EMBEDDINGS: &str = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5,-0.25]}],"model":"m"}"#;

/// A request as the upstream got it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// How one of the upstream's body streams ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Every event was sent.
    Complete,
    /// Dropped before its end: its reader went away.
    Dropped,
}

#[derive(Clone)]
struct Shared {
    release: watch::Receiver<bool>,
    ended: mpsc::UnboundedSender<Ended>,
    received: Arc<Mutex<Vec<Received>>>,
}

/// The running upstream; it stops when dropped.
pub(crate) struct Upstream {
    addr: SocketAddr,
    release: watch::Sender<bool>,
    ended: tokio::sync::Mutex<mpsc::UnboundedReceiver<Ended>>,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl Upstream {
    pub(crate) async fn start() -> Self {
        let (release, released) = watch::channel(false);
        let (ended_tx, ended) = mpsc::unbounded_channel();
        let received = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            release: released,
            ended: ended_tx,
            received: Arc::clone(&received),
        };
        let router = Router::new()
            .route("/v1/chat/completions", post(stream))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/models", axum::routing::get(held_models))
            .with_state(shared);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            addr,
            release,
            ended: tokio::sync::Mutex::new(ended),
            received,
            task,
        }
    }

    /// `http://127.0.0.1:PORT/v1`.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Lets every stream, held now or later, send the rest of its events.
    pub(crate) fn release(&self) {
        self.release.send_replace(true);
    }

    /// How the next body stream ended, if one ends within `within`.
    pub(crate) async fn next_ended(&self, within: Duration) -> Option<Ended> {
        let mut ended = self.ended.lock().await;
        tokio::time::timeout(within, ended.recv())
            .await
            .ok()
            .flatten()
    }

    /// The headers of every request so far, oldest first.
    pub(crate) fn headers(&self) -> Vec<HeaderMap> {
        self.received()
            .into_iter()
            .map(|request| request.headers)
            .collect()
    }

    /// Every request so far, oldest first.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().expect("not poisoned").clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reports how its stream ended when dropped.
struct Guard {
    ended: mpsc::UnboundedSender<Ended>,
    complete: bool,
}

impl Guard {
    fn finish(&mut self) {
        self.complete = true;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let how = if self.complete {
            Ended::Complete
        } else {
            Ended::Dropped
        };
        let _ = self.ended.send(how);
    }
}

struct Step {
    next: usize,
    release: watch::Receiver<bool>,
    guard: Guard,
}

async fn record(shared: &Shared, request: Request) {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .expect("a request body");
    shared
        .received
        .lock()
        .expect("not poisoned")
        .push(Received {
            path: parts.uri.path().to_owned(),
            headers: parts.headers,
            body,
        });
}

async fn embeddings(State(shared): State<Shared>, request: Request) -> Response {
    record(&shared, request).await;
    Response::builder()
        .header("content-type", "application/json")
        .header("x-ratelimit-remaining-requests", "99")
        .header("set-cookie", "upstream-session=never-forwarded")
        .header("x-upstream-internal", "never-forwarded")
        .body(Body::from(EMBEDDINGS))
        .expect("a valid response")
}

/// Answers nothing until released; says whether it got there or was dropped first (the
/// gateway's request went away before the head).
async fn held_models(State(shared): State<Shared>, request: Request) -> Response {
    record(&shared, request).await;
    let mut guard = Guard {
        ended: shared.ended.clone(),
        complete: false,
    };
    let mut release = shared.release.clone();
    let _ = release.wait_for(|released| *released).await;
    guard.finish();
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(r#"{"object":"list","data":[]}"#))
        .expect("a valid response")
}

async fn stream(State(shared): State<Shared>, request: Request) -> Response {
    record(&shared, request).await;
    let start = Step {
        next: 0,
        release: shared.release.clone(),
        guard: Guard {
            ended: shared.ended.clone(),
            complete: false,
        },
    };
    let events = futures_util::stream::unfold(start, |mut step| async move {
        let event = match step.next {
            0 => FIRST,
            1 => {
                // Held here until the test says so.
                let _ = step.release.wait_for(|released| *released).await;
                REST[0]
            }
            2 => REST[1],
            _ => {
                step.guard.finish();
                return None;
            }
        };
        step.next += 1;
        Some((
            Ok::<_, std::io::Error>(Bytes::from_static(event.as_bytes())),
            step,
        ))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(events))
        .expect("a valid response")
}
