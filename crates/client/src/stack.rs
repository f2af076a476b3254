//! Assembly of the tower stack behind [`EvolutionInference`](crate::EvolutionInference).
//!
//! ```text
//! Metrics                       evolution-metrics: one observation per call (latency, outcome, attempts)
//! Deadline (overall, optional)  the caller's deadline (`total_timeout`), backoff sleeps included
//! Retry                         evolution-retry: classify, backoff, Retry-After, shared budget
//! AttemptCounter                counts the attempts of each call for Metrics
//! Deadline (per attempt)        `request_timeout`: everything one attempt waits for
//! Fallback (with a backup key)  evolution-fallback: primary ↔ backup on auth failure
//!   or Pool (with deployments)  evolution-pool: choose a deployment, cooldowns, breaker, limits, failover
//!   ToDeployment                per deployment: its own base URL and model, if it has them
//!   Auth                        per key: Authorization: Bearer; on 401 invalidate-if-current, resend once
//!   SetSensitiveRequestHeaders  (tower-http)
//!   SetRequestHeader            (tower-http) Content-Type: application/json unless set
//!   StreamUsage                 asks a stream for its usage, unless the endpoint refuses that
//!   Trace                       a debug span per request sent: method, URI, status, latency
//!   HttpTransport               reqwest::Client (rustls), shared by both keys
//! ```
//!
//! The per-attempt limit sits above `Fallback` and `Auth`, so that one attempt is bounded as
//! a whole: the wait for a token (and for the shared cache's lock), the request, the resend
//! after a 401 and the resend to the backup key all count against `request_timeout`. Both
//! limits are [`Deadline`]s, tower timeouts that let `Auth` see when time is up: a wait for a
//! token cut by either ends with [`TokenError::Deadline`](evolution_token::TokenError::Deadline)
//! (IAM did not answer), anything else with `tower::timeout::error::Elapsed`.
//!
//! The pieces are public so that a service of your own can reuse them:
//!
//! ```
//! use std::time::Duration;
//! use evolution_client::stack;
//! use evolution_token::{Credentials, TokenManager};
//!
//! let tokens = TokenManager::builder(Credentials::new("key-id", "secret")).build()?;
//! let service = stack::authenticated(reqwest::Client::new(), tokens, Duration::from_secs(60));
//! # drop(service);
//! # Ok::<(), evolution_token::TokenError>(())
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use evolution_fallback::{Failback, Fallback, FallbackEvent, FallbackHandle, FallbackLayer, Side};
use evolution_metrics::{
    AttemptCounter, AttemptCounterLayer, FallbackSide, Metrics, MetricsService,
};
use evolution_pool::{
    AllCooling, HealthConfig, Pool, PoolHandle, PoolMember, RateLimits, Strategy,
};
use evolution_retry::{RetryConfig, RetryEvent, RetryLayer, RetryPolicy};
use evolution_token::{Auth, AuthLayer, BoxError, Deadline, DeadlineLayer, TokenManager};
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Request, Response};
use tower::retry::Retry;
use tower::util::{BoxCloneSyncService, Either};
use tower::{Layer, Service, ServiceBuilder};
use tower_http::sensitive_headers::{SetSensitiveRequestHeaders, SetSensitiveRequestHeadersLayer};
use tower_http::set_header::{SetRequestHeader, SetRequestHeaderLayer};

use crate::DeploymentKey;
use crate::redirect::{Retarget, ToDeployment};
use crate::stream_usage::{Refusals, StreamUsage, StreamUsageLayer};
use crate::trace::{Trace, TraceLayer};
use crate::{Body, HttpTransport};

/// The assembled service: requests with `Bytes` bodies in, streaming responses out.
pub type EvolutionService = BoxCloneSyncService<Request<Bytes>, Response<Body>, BoxError>;

#[derive(Debug, Clone)]
pub(crate) struct StackConfig {
    pub(crate) request_timeout: Duration,
    pub(crate) total_timeout: Option<Duration>,
    pub(crate) stream: crate::stream::StreamLimits,
    pub(crate) retry: Option<RetryConfig>,
    pub(crate) failback: Failback,
    pub(crate) metrics: Metrics,
}

/// A pool of deployments, validated, before its stacks are built.
pub(crate) struct PoolSpec {
    pub(crate) members: Vec<MemberSpec>,
    pub(crate) strategy: Strategy,
    pub(crate) health: HealthConfig,
    pub(crate) all_cooling: AllCooling,
}

impl PoolSpec {
    /// Each deployment's name and token manager, in order.
    pub(crate) fn keys(&self) -> Vec<DeploymentKey> {
        self.members
            .iter()
            .map(|m| DeploymentKey {
                name: Arc::from(m.name.as_str()),
                tokens: m.tokens.clone(),
                base_url: Arc::clone(&m.base_url),
            })
            .collect()
    }
}

/// One deployment of a [`PoolSpec`].
pub(crate) struct MemberSpec {
    pub(crate) name: String,
    pub(crate) tokens: TokenManager,
    pub(crate) retarget: Retarget,
    /// Where its calls go (its own base URL, or the client's).
    pub(crate) base_url: Arc<str>,
    pub(crate) weight: u32,
    pub(crate) limits: Option<RateLimits>,
}

/// What [`build`] made: the stack and the handles the client exposes.
pub(crate) struct Built<T = HttpTransport> {
    pub(crate) stack: Stack<T>,
    pub(crate) fallback: Option<FallbackHandle>,
    pub(crate) pool: Option<PoolHandle>,
}

/// The whole stack, concrete: the client calls it without boxing the service or its
/// future; [`EvolutionService`] boxes it for callers who need one type.
pub(crate) type Stack<T = HttpTransport> = MetricsService<Either<Deadline<Retried<T>>, Retried<T>>>;
type Retried<T> = Either<Retry<RetryPolicy, Counted<T>>, Counted<T>>;
type Counted<T> = AttemptCounter<Deadline<Keys<T>>>;
type Keys<T> =
    Either<Either<KeyStack<T>, Fallback<KeyStack<T>, KeyStack<T>>>, Pool<DeploymentStack<T>>>;

/// One deployment's stack in a pool: its key's stack, sent to its own endpoint and model.
type DeploymentStack<T> = ToDeployment<KeyStack<T>>;

/// One key's stack, concrete like the rest of [`Stack`]: no box between layers, so that
/// cloning it copies plain `Arc`s rather than a chain of boxes. Its time limit is above it
/// (above `Fallback` in [`Stack`]).
type KeyStack<T> =
    Auth<SetSensitiveRequestHeaders<SetRequestHeader<StreamUsage<Trace<T>>, HeaderValue>>>;

/// What a transport under the stack must be: `http::Request<Bytes>` in, a streaming
/// [`Body`] out, [`BoxError`] for failures, and cheap to clone (each call clones it).
pub trait Transport:
    Service<Request<Bytes>, Response = Response<Body>, Error = BoxError, Future = Self::Pending>
    + Clone
    + Send
    + Sync
    + 'static
{
    /// The response future.
    type Pending: Future<Output = Result<Response<Body>, BoxError>> + Send + 'static;
}

impl<T> Transport for T
where
    T: Service<Request<Bytes>, Response = Response<Body>, Error = BoxError>
        + Clone
        + Send
        + Sync
        + 'static,
    T::Future: Send + 'static,
{
    type Pending = T::Future;
}

fn key_stack<T: Transport>(
    transport: T,
    tokens: TokenManager,
    refusals: &Arc<Refusals>,
) -> KeyStack<T> {
    ServiceBuilder::new()
        .layer(AuthLayer::new(tokens))
        .layer(SetSensitiveRequestHeadersLayer::new([AUTHORIZATION]))
        // Set here, under the layers that keep copies of the request for resends: a
        // request without headers is copied without allocating.
        .layer(SetRequestHeaderLayer::if_not_present(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        // Under `Auth`, where the URI is final: the refusals are remembered per endpoint.
        .layer(StreamUsageLayer::new(Arc::clone(refusals)))
        .layer(TraceLayer)
        .service(transport)
}

/// One key's stack: a per-attempt [`Deadline`] of `per_attempt` (the wait for a token, the
/// request and the resend after a 401 together), bearer tokens from `tokens`, tower-http's
/// sensitive headers, `Content-Type: application/json` unless the request has a content
/// type, a trace span, and `http` as the transport.
pub fn authenticated(
    http: reqwest::Client,
    tokens: TokenManager,
    per_attempt: Duration,
) -> EvolutionService {
    authenticated_over(HttpTransport::new(http), tokens, per_attempt)
}

/// [`authenticated`] over a transport of your own instead of `reqwest`.
pub fn authenticated_over<T: Transport>(
    transport: T,
    tokens: TokenManager,
    per_attempt: Duration,
) -> EvolutionService {
    let refusals = Arc::default();
    BoxCloneSyncService::new(Deadline::new(
        key_stack(transport, tokens, &refusals),
        per_attempt,
    ))
}

/// The pool of `spec`'s deployments over `transport`, recording into `metrics`.
///
/// # Errors
///
/// What the pool's builder refuses (names, weights), as text for a configuration error.
fn pool<T: Transport>(
    transport: &T,
    spec: &PoolSpec,
    metrics: &Metrics,
    refusals: &Arc<Refusals>,
) -> Result<Pool<DeploymentStack<T>>, evolution_pool::BuildError> {
    let members = spec.members.iter().map(|member| {
        let stack = ToDeployment::new(
            key_stack(transport.clone(), member.tokens.clone(), refusals),
            member.retarget.clone(),
        );
        let mut pool_member = PoolMember::new(member.name.as_str(), stack).weight(member.weight);
        if let Some(limits) = &member.limits {
            pool_member = pool_member.limits(limits.clone());
        }
        pool_member
    });
    Pool::builder(members)
        .strategy(spec.strategy)
        .health(spec.health)
        .when_all_cooling(spec.all_cooling)
        .observer(metrics.pool_observer(spec.members.iter().map(|m| m.name.as_str())))
        .build()
}

pub(crate) fn build<T: Transport>(
    transport: T,
    primary: &TokenManager,
    backup: Option<&TokenManager>,
    pool_spec: Option<&PoolSpec>,
    config: &StackConfig,
) -> Result<Built<T>, evolution_pool::BuildError> {
    let metrics = &config.metrics;
    let refusals = Arc::default();
    if let Some(spec) = pool_spec {
        let pool = pool(&transport, spec, metrics, &refusals)?;
        let handle = pool.handle();
        return Ok(finish(Either::Right(pool), None, Some(handle), config));
    }
    let main = key_stack(transport.clone(), primary.clone(), &refusals);
    let (keys, fallback) = match backup {
        None => (Either::Left(main), None),
        Some(backup) => {
            let observer = metrics.clone();
            let layer = FallbackLayer::new(key_stack(transport, backup.clone(), &refusals))
                .key_ids_from(primary, backup)
                .failback(config.failback)
                .observer(move |event: &FallbackEvent| {
                    let side = match event.active() {
                        Side::Primary => FallbackSide::Primary,
                        Side::Backup => FallbackSide::Backup,
                    };
                    match event {
                        FallbackEvent::Switched { reason, .. } => {
                            observer.record_fallback_switch(side, reason.as_str());
                        }
                        other if other.is_switch() => {
                            observer.record_fallback_switch(side, other.as_str());
                        }
                        _ => observer.set_fallback_side(side),
                    }
                });
            metrics.set_fallback_side(FallbackSide::Primary);
            let handle = layer.handle();
            (Either::Right(layer.layer(main)), Some(handle))
        }
    };
    Ok(finish(Either::Left(keys), fallback, None, config))
}

/// The layers above the keys: per-attempt deadline, attempt counter, retry, total deadline
/// and metrics.
fn finish<T: Transport>(
    keys: Keys<T>,
    fallback: Option<FallbackHandle>,
    pool: Option<PoolHandle>,
    config: &StackConfig,
) -> Built<T> {
    let metrics = &config.metrics;
    let attempt = DeadlineLayer::new(config.request_timeout).layer(keys);
    let counted = AttemptCounterLayer::new().layer(attempt);
    let retried = match &config.retry {
        Some(retry) => {
            let observer = metrics.clone();
            let retry = retry.clone().with_observer(move |event: &RetryEvent| {
                observer.record_retry(event.reason.label())
            });
            Either::Left(RetryLayer::new(retry).layer(counted))
        }
        None => Either::Right(counted),
    };
    let stack = ServiceBuilder::new()
        .layer(metrics.layer())
        .option_layer(config.total_timeout.map(DeadlineLayer::new))
        .service(retried);
    Built {
        stack,
        fallback,
        pool,
    }
}
