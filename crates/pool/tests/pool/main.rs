//! Behaviour of the pool on tokio's paused clock, over scripted deployments: `service_fn`s
//! that count their calls and answer what the scenario sets (a status, a 429 with
//! `Retry-After`, a rejected key, an answer that never comes), after an optional delay.

mod breaker;
mod builder;
mod cooling;
mod deadline;
mod failover;
mod keys;
mod mixed;
mod rate_limited;
mod strategies;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use evolution_pool::{
    CooldownReason, DeploymentState, DeploymentStatus, Pool, PoolBuilder, PoolEvent, PoolMember,
    RequestOutcome, Served,
};
use evolution_token::{BoxError, DeadlineLayer, TokenError};
use http::{Request, Response, StatusCode};
use tokio::task::JoinSet;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// One deployment's stack, as the pool sees it.
pub(crate) type Stack = BoxCloneSyncService<Request<Bytes>, Response<String>, BoxError>;

/// What a scripted deployment does with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Answers this status; the body is the deployment's name.
    Status(u16),
    /// Answers 429 with this `Retry-After`.
    RetryAfter(&'static str),
    /// Fails as IAM refusing the key (`TokenError::InvalidCredentials`).
    IamRejects,
    /// Fails as IAM being down (`TokenError::Unavailable`): nothing against the key.
    IamDown,
    /// Fails without an answer, with an `io::Error` of this kind at the bottom of the
    /// error's chain (as reqwest reports a refused connection).
    Io(io::ErrorKind),
    /// Never answers.
    Hang,
}

/// A transport error over its cause, as reqwest's and hyper's wrap an `io::Error`.
#[derive(Debug, thiserror::Error)]
#[error("error sending the request")]
pub(crate) struct TransportError(#[source] io::Error);

/// A scripted deployment: its name, what it answers, after how long, and its calls.
#[derive(Debug)]
pub(crate) struct Script {
    pub(crate) name: &'static str,
    calls: AtomicUsize,
    reply: Mutex<Reply>,
    delay: Mutex<Duration>,
    /// The names of the deployments called, in order, shared by a scenario's deployments.
    log: Arc<Mutex<Vec<&'static str>>>,
}

impl Script {
    /// Calls received so far.
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Answers `reply` from now on.
    pub(crate) fn answer(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    /// Answers after `delay` from now on.
    pub(crate) fn delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    async fn serve(self: Arc<Self>) -> Result<Response<String>, BoxError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.log.lock().unwrap().push(self.name);
        let (reply, delay) = (*self.reply.lock().unwrap(), *self.delay.lock().unwrap());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let status = match reply {
            Reply::Status(status) => status,
            Reply::RetryAfter(_) => 429,
            Reply::IamRejects => {
                return Err(TokenError::InvalidCredentials {
                    key_id: self.name.into(),
                }
                .into());
            }
            Reply::IamDown => {
                return Err(TokenError::Unavailable {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    attempts: 3,
                    auth_url: "http://iam.test/token".into(),
                }
                .into());
            }
            Reply::Io(kind) => return Err(TransportError(kind.into()).into()),
            Reply::Hang => std::future::pending().await,
        };
        let mut response = Response::builder().status(status);
        if let Reply::RetryAfter(value) = reply {
            response = response.header(http::header::RETRY_AFTER, value);
        }
        Ok(response.body(self.name.to_owned())?)
    }
}

/// A scenario's deployments, in the pool's order, and the order they were called in.
pub(crate) struct Deployments {
    pub(crate) scripts: Vec<Arc<Script>>,
    log: Arc<Mutex<Vec<&'static str>>>,
}

impl Deployments {
    /// Deployments named `names`, each answering 200 at once.
    pub(crate) fn new(names: &[&'static str]) -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let scripts = names
            .iter()
            .map(|&name| {
                Arc::new(Script {
                    name,
                    calls: AtomicUsize::new(0),
                    reply: Mutex::new(Reply::Status(200)),
                    delay: Mutex::new(Duration::ZERO),
                    log: Arc::clone(&log),
                })
            })
            .collect();
        Self { scripts, log }
    }

    /// The deployment at `index`.
    pub(crate) fn get(&self, index: usize) -> &Arc<Script> {
        &self.scripts[index]
    }

    /// Every deployment answers `reply`.
    pub(crate) fn answer_all(&self, reply: Reply) {
        for script in &self.scripts {
            script.answer(reply);
        }
    }

    /// The calls each deployment received, in the pool's order.
    pub(crate) fn calls(&self) -> Vec<usize> {
        self.scripts.iter().map(|script| script.calls()).collect()
    }

    /// The deployments called so far, in order; clears the log.
    pub(crate) fn take_log(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    /// The pool members, weight 1 each.
    pub(crate) fn members(&self) -> Vec<PoolMember<Stack>> {
        self.weighted(&vec![1; self.scripts.len()])
    }

    /// The pool members with these weights.
    pub(crate) fn weighted(&self, weights: &[u32]) -> Vec<PoolMember<Stack>> {
        self.scripts
            .iter()
            .zip(weights)
            .map(|(script, &weight)| PoolMember::new(script.name, stack(script)).weight(weight))
            .collect()
    }

    /// A pool builder over these deployments, recording its events in `events`.
    pub(crate) fn builder(&self, events: &Events) -> PoolBuilder<Stack> {
        Pool::builder(self.members()).observer(events.observer())
    }
}

/// The stack of one scripted deployment.
pub(crate) fn stack(script: &Arc<Script>) -> Stack {
    let script = Arc::clone(script);
    BoxCloneSyncService::new(service_fn(move |_request: Request<Bytes>| {
        Arc::clone(&script).serve()
    }))
}

/// A pool event with its data owned.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    Sent(String, u32),
    Finished(String, RequestOutcome),
    Changed(String, DeploymentState, DeploymentState),
    Cooldown(String, CooldownReason, Duration),
    Other,
}

/// Records a pool's events.
#[derive(Debug, Clone, Default)]
pub(crate) struct Events(Arc<Mutex<Vec<Event>>>);

impl Events {
    pub(crate) fn observer(&self) -> impl Fn(&PoolEvent<'_>) + Send + Sync + 'static {
        let events = Arc::clone(&self.0);
        move |event: &PoolEvent<'_>| {
            let event = match *event {
                PoolEvent::Sent {
                    deployment,
                    in_flight,
                } => Event::Sent(deployment.to_owned(), in_flight),
                PoolEvent::Finished {
                    deployment,
                    outcome,
                    ..
                } => Event::Finished(deployment.to_owned(), outcome),
                PoolEvent::StateChanged {
                    deployment,
                    from,
                    to,
                } => Event::Changed(deployment.to_owned(), from, to),
                PoolEvent::Cooldown {
                    deployment,
                    reason,
                    cooldown,
                } => Event::Cooldown(deployment.to_owned(), reason, cooldown),
                _ => Event::Other,
            };
            events.lock().unwrap().push(event);
        }
    }

    /// The events so far; clears the record.
    pub(crate) fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    /// The state changes and cooldowns so far (not the calls); clears the record.
    pub(crate) fn take_health(&self) -> Vec<Event> {
        self.take()
            .into_iter()
            .filter(|event| matches!(event, Event::Changed(..) | Event::Cooldown(..)))
            .collect()
    }
}

pub(crate) fn changed(name: &str, from: DeploymentState, to: DeploymentState) -> Event {
    Event::Changed(name.to_owned(), from, to)
}

pub(crate) fn cooldown(name: &str, reason: CooldownReason, secs: u64) -> Event {
    Event::Cooldown(name.to_owned(), reason, Duration::from_secs(secs))
}

pub(crate) fn finished(name: &str, outcome: RequestOutcome) -> Event {
    Event::Finished(name.to_owned(), outcome)
}

/// A chat request.
pub(crate) fn request() -> Request<Bytes> {
    Request::post("http://evolution.test/v1/chat/completions")
        .body(Bytes::from_static(br#"{"messages":[]}"#))
        .unwrap()
}

/// One call through `pool`.
///
/// Boxed here, outside any `async` block: rustc checks that a spawned `async` block holding
/// the pool's future is `Send` with its lifetimes erased, and then cannot prove
/// `BoxError: Into<BoxError>` (the pool's bound on its deployments' errors) "for any
/// lifetime" ("implementation of `From` is not general enough"); tower's `Timeout` over a
/// `BoxError` service fails the same way.
pub(crate) fn call(
    pool: &Pool<Stack>,
) -> Pin<Box<dyn Future<Output = Result<Response<String>, BoxError>> + Send>> {
    Box::pin(pool.clone().oneshot(request()))
}

/// One call through `pool` under a `Deadline` of `limit` above it (boxed as [`call`]).
pub(crate) fn call_within(
    pool: &Pool<Stack>,
    limit: Duration,
) -> Pin<Box<dyn Future<Output = Result<Response<String>, BoxError>> + Send>> {
    Box::pin(
        ServiceBuilder::new()
            .layer(DeadlineLayer::new(limit))
            .service(pool.clone())
            .oneshot(request()),
    )
}

/// One call that must succeed: the deployment that served it, from [`Served`].
pub(crate) async fn served_by(pool: &Pool<Stack>) -> String {
    let response = call(pool).await.expect("the call succeeds");
    assert_eq!(response.status(), StatusCode::OK);
    let served = response
        .extensions()
        .get::<Served>()
        .expect("a Served extension");
    assert_eq!(
        served.deployment(),
        response.body(),
        "Served names who answered"
    );
    served.deployment().to_owned()
}

/// `callers` calls at once, each in its own task; their results once all ended.
pub(crate) async fn concurrent(
    pool: &Pool<Stack>,
    callers: usize,
) -> Vec<Result<Response<String>, BoxError>> {
    let mut tasks = JoinSet::new();
    for _ in 0..callers {
        let pool = pool.clone();
        tasks.spawn(async move { call(&pool).await });
    }
    tasks.join_all().await
}

/// The status of the deployment named `name`.
pub(crate) fn status(pool: &Pool<Stack>, name: &str) -> DeploymentStatus {
    pool.handle()
        .deployments()
        .into_iter()
        .find(|d| &*d.name == name)
        .expect("a deployment of that name")
}

/// The most calls `events` saw in flight at once at `name`.
pub(crate) fn peak_in_flight(events: &[Event], name: &str) -> u32 {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Sent(deployment, in_flight) if deployment == name => Some(*in_flight),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// How many `Finished` events of `name` ended with `outcome`.
pub(crate) fn count_finished(events: &[Event], name: &str, outcome: RequestOutcome) -> usize {
    events
        .iter()
        .filter(|event| **event == finished(name, outcome))
        .count()
}
