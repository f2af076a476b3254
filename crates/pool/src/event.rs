//! [`PoolEvent`]s and their [`PoolObserver`]s (metrics).

use std::time::Duration;

use crate::health::{CooldownReason, DeploymentState};
use crate::limit::LimitKind;

/// How one call to a deployment ended: the `outcome` label of
/// `evolution_deployment_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequestOutcome {
    /// It answered (any answer that says nothing against it, a 4xx included).
    Success,
    /// Its key was rejected.
    KeyRejected,
    /// It answered 429.
    RateLimited,
    /// It answered 5xx.
    ServerError,
    /// It failed without an answer.
    Failed,
    /// It did not answer before the call's deadline.
    Timeout,
    /// The caller left before it answered.
    Cancelled,
}

impl RequestOutcome {
    /// A stable snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::KeyRejected => "key_rejected",
            Self::RateLimited => "rate_limited",
            Self::ServerError => "server_error",
            Self::Failed => "failed",
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Something that happened in a [`Pool`](crate::Pool). Deployments are named by their
/// configured name, never by a key or secret.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum PoolEvent<'a> {
    /// A call was sent to a deployment; `in_flight` counts it.
    Sent {
        /// The deployment.
        deployment: &'a str,
        /// Its calls in flight, this one included.
        in_flight: u32,
    },
    /// A call to a deployment ended.
    Finished {
        /// The deployment.
        deployment: &'a str,
        /// How.
        outcome: RequestOutcome,
        /// Its calls still in flight.
        in_flight: u32,
    },
    /// A deployment's state changed (once per change, however many calls saw its cause).
    StateChanged {
        /// The deployment.
        deployment: &'a str,
        /// The state before.
        from: DeploymentState,
        /// The state now.
        to: DeploymentState,
    },
    /// A deployment started cooling down (or its circuit opened), for `cooldown`.
    Cooldown {
        /// The deployment.
        deployment: &'a str,
        /// Why.
        reason: CooldownReason,
        /// For how long it is skipped before a probe.
        cooldown: Duration,
    },
    /// A deployment was skipped at its rate limit.
    RateLimited {
        /// The deployment.
        deployment: &'a str,
        /// Which limit.
        kind: LimitKind,
    },
}

/// Receives a [`Pool`](crate::Pool)'s events. Any `Fn(&PoolEvent<'_>) + Send + Sync` is one.
pub trait PoolObserver: Send + Sync + 'static {
    /// Called for each event, on the task of the call that caused it: keep it short.
    fn on_event(&self, event: &PoolEvent<'_>);
}

impl<F> PoolObserver for F
where
    F: Fn(&PoolEvent<'_>) + Send + Sync + 'static,
{
    fn on_event(&self, event: &PoolEvent<'_>) {
        self(event)
    }
}
