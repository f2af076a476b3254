//! [`Member`]: one deployment of a pool, with its health, load and limits.

use std::sync::Arc;

use crate::health::Health;
use crate::limit::RateLimits;
use crate::load::Load;

#[derive(Debug)]
pub(crate) struct Member<S> {
    pub(crate) name: Arc<str>,
    pub(crate) service: S,
    pub(crate) weight: u32,
    pub(crate) health: Health,
    pub(crate) load: Load,
    pub(crate) limits: Option<RateLimits>,
}
