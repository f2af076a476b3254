//! [`PoolHandle`]: the deployments and their state, for `Stats`, health checks and tests.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::health::{CooldownReason, DeploymentState};
use crate::service::Inspect;

/// A deployment's state at one moment.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeploymentStatus {
    /// Its name.
    pub name: Arc<str>,
    /// Healthy, cooling or open.
    pub state: DeploymentState,
    /// Why it is cooling or open.
    pub reason: Option<CooldownReason>,
    /// How long until it is probed again (zero once the probe is due).
    pub ready_in: Option<Duration>,
    /// Its calls in flight.
    pub in_flight: u32,
    /// Calls it answered so far (any answer that says nothing against it, a 4xx included).
    pub served: u64,
}

/// Reads the state of a [`Pool`](crate::Pool)'s deployments. Cheap to clone.
#[derive(Clone)]
pub struct PoolHandle {
    pub(crate) pool: Arc<dyn Inspect>,
}

impl PoolHandle {
    /// Every deployment, in the configured order.
    pub fn deployments(&self) -> Vec<DeploymentStatus> {
        self.pool.statuses(Instant::now())
    }

    /// How many deployments are healthy.
    pub fn healthy(&self) -> usize {
        self.deployments()
            .iter()
            .filter(|d| d.state == DeploymentState::Healthy)
            .count()
    }
}

impl fmt::Debug for PoolHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolHandle")
            .field("deployments", &self.deployments())
            .finish()
    }
}
