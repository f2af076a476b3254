//! [`PoolMember`]: one deployment of a pool, as given; [`Member`]: as the pool keeps it.

use std::fmt;
use std::sync::Arc;

use crate::health::{Health, HealthConfig};
use crate::limit::RateLimits;
use crate::load::Load;

/// One deployment for [`Pool::builder`](crate::Pool::builder): a name (its label in metrics
/// and logs: never put a key in it), the service that sends to it (its key's stack), and
/// optionally a weight and rate limits.
pub struct PoolMember<S> {
    pub(crate) name: Arc<str>,
    pub(crate) service: S,
    pub(crate) weight: u32,
    pub(crate) limits: Option<RateLimits>,
}

impl<S> PoolMember<S> {
    /// A deployment named `name` served by `service`, with weight 1 and no limits.
    pub fn new(name: impl Into<Arc<str>>, service: S) -> Self {
        Self {
            name: name.into(),
            service,
            weight: 1,
            limits: None,
        }
    }

    /// Its share under [`Strategy::Weighted`](crate::Strategy::Weighted).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Its requests and tokens per minute.
    pub fn limits(mut self, limits: RateLimits) -> Self {
        self.limits = Some(limits);
        self
    }
}

impl<S> fmt::Debug for PoolMember<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolMember")
            .field("name", &self.name)
            .field("weight", &self.weight)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A deployment as the pool keeps it.
pub(crate) struct Member<S> {
    pub(crate) name: Arc<str>,
    pub(crate) service: S,
    pub(crate) weight: u32,
    pub(crate) health: Health,
    pub(crate) load: Load,
    pub(crate) limits: Option<RateLimits>,
}

impl<S> Member<S> {
    pub(crate) fn new(member: PoolMember<S>, health: HealthConfig) -> Self {
        Self {
            name: member.name,
            service: member.service,
            weight: member.weight,
            health: Health::new(health),
            load: Load::new(),
            limits: member.limits,
        }
    }
}

impl<S> fmt::Debug for Member<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member")
            .field("name", &self.name)
            .field("weight", &self.weight)
            .field("health", &self.health)
            .field("load", &self.load)
            .finish_non_exhaustive()
    }
}
