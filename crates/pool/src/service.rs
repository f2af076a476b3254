//! [`Pool`]: the service, and how it is built.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::task::{Context, Poll};
use std::time::Duration;

use evolution_token::BoxError;
use http::{Request, Response};
use tokio::time::Instant;
use tower_service::Service;

use crate::MAX_DEPLOYMENTS;
use crate::event::{PoolEvent, PoolObserver};
use crate::handle::{DeploymentStatus, PoolHandle};
use crate::health::HealthConfig;
use crate::member::{Member, PoolMember};
use crate::strategy::Strategy;

/// Longest a call waits for a deployment when no deadline is visible, unless set.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(30);

/// What a call does when every deployment is cooling down or at its rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllCooling {
    /// Wait for the soonest to be ready, if that is before the call's deadline (the
    /// earliest [`Deadline`](evolution_token::Deadline) above the pool) and within `max`;
    /// otherwise fail at once with [`Unavailable`](crate::Unavailable).
    Wait {
        /// The longest wait.
        max: Duration,
    },
    /// Fail at once with [`Unavailable`](crate::Unavailable), naming the soonest.
    Fail,
}

impl Default for AllCooling {
    fn default() -> Self {
        Self::Wait {
            max: DEFAULT_MAX_WAIT,
        }
    }
}

/// A pool that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No deployment was given.
    #[error("the pool has no deployment: add at least one")]
    Empty,
    /// More than [`MAX_DEPLOYMENTS`].
    #[error("the pool has {0} deployments; at most {MAX_DEPLOYMENTS} are supported")]
    TooMany(usize),
    /// Two deployments share a name.
    #[error("two deployments are named `{0}`: names label metrics and logs, so they must differ")]
    DuplicateName(String),
    /// A deployment has an empty name.
    #[error("a deployment has an empty name")]
    EmptyName,
    /// Every weight is zero under the weighted strategy.
    #[error("every deployment has weight 0: give at least one a positive weight")]
    NoWeight,
}

/// Sends each call to one of several deployments (keys, possibly with their own endpoints),
/// chosen by a [`Strategy`], skipping those that are cooling down, whose circuit is open or
/// that are at their rate limits, and failing over to the next one at once.
///
/// - **Cooldowns.** A rejected key (what `evolution_fallback::auth_failure` calls one) cools
///   its deployment for [`HealthConfig::key_cooldown`], a 429 for its `Retry-After` (or a
///   default), then one call probes it.
/// - **Circuit breaker.** Server errors, failed requests and timeouts (a call still in flight
///   at the deadline of a [`Deadline`](evolution_token::Deadline) above) open its circuit
///   after [`HealthConfig::breaker`] failures in a window; then one half-open call probes.
/// - **Failover.** A rejected key, a 429, a 5xx and a refused connection move the same
///   request to a deployment not tried yet, at once: each deployment is tried at most once
///   per call, so a call makes at most as many attempts as there are deployments, all
///   within the deadline above. When all were tried, the last answer is handed back (to the
///   retry layer). A failure that may have been processed (a reset, a timeout) is handed back
///   at once, for the retry layer to judge.
/// - **All cooling.** See [`AllCooling`].
/// - **Rate limits.** A deployment with [`RateLimits`](crate::RateLimits) takes a request
///   and an estimate of its tokens before it is called; the estimate is corrected when the
///   caller reports the usage through [`Served`](crate::Served).
///
/// Readiness is driven per call on the deployment the call goes to, as
/// `evolution_fallback::Fallback` does: the pool itself is always ready. Clones share
/// everything.
///
/// The response future is boxed ([`ResponseFuture`]): a call may wait on a rate limit (on
/// Redis), fail over and wait for a cooldown, which an `async` block says plainly and a
/// hand-written state machine would not; the box costs one allocation per call (see the
/// `pool_strategy` bench: the whole pool adds about 250 ns over a bare key).
///
/// Why not tower's `balance::p2c::Balance`: it keeps every endpoint in a ready cache driven
/// by `poll_ready`, changes the set only through `Discover`, and sends a request once; a
/// pool must skip an endpoint for a while (a cooldown, a rate limit), resend a refused
/// request to another one, and choose by order or weight as well. It keeps tower's load
/// measure and its power-of-two-choices rule for [`Strategy::LeastLoaded`].
pub struct Pool<S> {
    pub(crate) shared: Arc<Shared<S>>,
}

pub(crate) struct Shared<S> {
    pub(crate) members: Box<[Member<S>]>,
    pub(crate) strategy: Strategy,
    pub(crate) cursor: AtomicUsize,
    pub(crate) all_cooling: AllCooling,
    pub(crate) observers: Box<[Arc<dyn PoolObserver>]>,
    /// Whether any deployment limits tokens (calls then estimate theirs).
    pub(crate) counts_tokens: bool,
}

impl<S> Shared<S> {
    pub(crate) fn emit(&self, event: &PoolEvent<'_>) {
        for observer in &self.observers {
            observer.on_event(event);
        }
    }
}

impl<S> Clone for Pool<S> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S> fmt::Debug for Pool<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("strategy", &self.shared.strategy)
            .field("deployments", &self.shared.members)
            .finish_non_exhaustive()
    }
}

impl<S> Pool<S> {
    /// Starts a pool of `deployments`.
    pub fn builder(deployments: impl IntoIterator<Item = PoolMember<S>>) -> PoolBuilder<S> {
        PoolBuilder {
            members: deployments.into_iter().collect(),
            strategy: Strategy::default(),
            health: HealthConfig::default(),
            all_cooling: AllCooling::default(),
            observers: Vec::new(),
        }
    }

    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.shared.strategy
    }

    /// The deployments' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.shared.members.iter().map(|member| &*member.name)
    }
}

impl<S: Send + Sync + 'static> Pool<S> {
    /// A handle on the deployments' state.
    pub fn handle(&self) -> PoolHandle {
        PoolHandle {
            pool: Arc::clone(&self.shared) as Arc<dyn Inspect>,
        }
    }
}

/// Builds a [`Pool`].
#[must_use]
pub struct PoolBuilder<S> {
    members: Vec<PoolMember<S>>,
    strategy: Strategy,
    health: HealthConfig,
    all_cooling: AllCooling,
    observers: Vec<Arc<dyn PoolObserver>>,
}

impl<S> fmt::Debug for PoolBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("members", &self.members)
            .field("strategy", &self.strategy)
            .field("health", &self.health)
            .field("all_cooling", &self.all_cooling)
            .finish_non_exhaustive()
    }
}

impl<S> PoolBuilder<S> {
    /// The strategy. Defaults to [`Strategy::Ordered`].
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Cooldowns and the circuit breaker. Defaults to [`HealthConfig::default()`].
    pub fn health(mut self, health: HealthConfig) -> Self {
        self.health = health;
        self
    }

    /// What a call does when every deployment is cooling. Defaults to waiting up to
    /// [`DEFAULT_MAX_WAIT`] within the call's deadline.
    pub fn when_all_cooling(mut self, all_cooling: AllCooling) -> Self {
        self.all_cooling = all_cooling;
        self
    }

    /// Adds an observer of [`PoolEvent`]s (metrics).
    pub fn observer(mut self, observer: impl PoolObserver) -> Self {
        self.observers.push(Arc::new(observer));
        self
    }

    /// Checks the deployments and builds the pool.
    ///
    /// # Errors
    ///
    /// [`BuildError`]: no deployment, more than [`MAX_DEPLOYMENTS`], an empty or repeated
    /// name, or only zero weights under [`Strategy::Weighted`].
    pub fn build(self) -> Result<Pool<S>, BuildError> {
        if self.members.is_empty() {
            return Err(BuildError::Empty);
        }
        if self.members.len() > MAX_DEPLOYMENTS {
            return Err(BuildError::TooMany(self.members.len()));
        }
        let mut names = HashSet::new();
        for member in &self.members {
            if member.name.trim().is_empty() {
                return Err(BuildError::EmptyName);
            }
            if !names.insert(Arc::clone(&member.name)) {
                return Err(BuildError::DuplicateName(member.name.to_string()));
            }
        }
        if self.strategy == Strategy::Weighted && self.members.iter().all(|m| m.weight == 0) {
            return Err(BuildError::NoWeight);
        }
        let counts_tokens = self
            .members
            .iter()
            .any(|m| m.limits.as_ref().is_some_and(|l| l.counts_tokens()));
        let health = self.health;
        Ok(Pool {
            shared: Arc::new(Shared {
                members: self
                    .members
                    .into_iter()
                    .map(|member| Member::new(member, health))
                    .collect(),
                strategy: self.strategy,
                cursor: AtomicUsize::new(0),
                all_cooling: self.all_cooling,
                observers: self.observers.into(),
                counts_tokens,
            }),
        })
    }
}

/// Reading the deployments' state without knowing their service type.
pub(crate) trait Inspect: Send + Sync {
    fn statuses(&self, now: Instant) -> Vec<DeploymentStatus>;
}

impl<S: Send + Sync> Inspect for Shared<S> {
    fn statuses(&self, now: Instant) -> Vec<DeploymentStatus> {
        self.members
            .iter()
            .map(|member| {
                let (state, reason, until) = member.health.snapshot();
                DeploymentStatus {
                    name: Arc::clone(&member.name),
                    state,
                    reason,
                    ready_in: until.map(|until| until.saturating_duration_since(now)),
                    in_flight: member.load.in_flight(),
                    served: member.load.served(),
                }
            })
            .collect()
    }
}

/// The response future of a [`Pool`].
pub type ResponseFuture<B> =
    Pin<Box<dyn Future<Output = Result<Response<B>, BoxError>> + Send + 'static>>;

impl<S, ReqB, ResB> Service<Request<ReqB>> for Pool<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    ReqB: Clone + AsRef<[u8]> + Send + Sync + 'static,
    ResB: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = ResponseFuture<ResB>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is driven per call, on the deployment the call goes to.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        // Read here, inside the `Deadline` above's scope: the call's own deadline.
        let deadline = evolution_token::current_deadline();
        Box::pin(crate::call::run(
            Arc::clone(&self.shared),
            request,
            deadline,
        ))
    }
}
