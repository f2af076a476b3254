//! [`FallbackHandle`]: look at and steer the switch state from outside the stack.

use std::fmt;
use std::sync::Arc;

use crate::side::Side;
use crate::state::Shared;

/// A handle on the switch state of a [`Fallback`](crate::Fallback) (and of every clone of it,
/// and of every service built by the same [`FallbackLayer`](crate::FallbackLayer)).
///
/// Cheap to clone, `Send + Sync`. Take it from the layer or the service before it is moved
/// into a stack.
///
/// ```
/// use evolution_fallback::{FallbackLayer, Side};
///
/// # let backup = tower::service_fn(|_: http::Request<String>| async {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// # });
/// let layer = FallbackLayer::new(backup);
/// let handle = layer.handle();
/// assert!(handle.using_primary());
/// assert_eq!(handle.rotate(), Side::Backup);
/// assert!(!handle.using_primary());
/// assert_eq!(handle.switches(), 1);
/// ```
#[derive(Clone)]
pub struct FallbackHandle {
    shared: Arc<Shared>,
}

impl FallbackHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Whether new requests go to the primary service.
    pub fn using_primary(&self) -> bool {
        self.active() == Side::Primary
    }

    /// The side new requests go to.
    pub fn active(&self) -> Side {
        self.shared.snapshot().active
    }

    /// The side traffic goes back to on failback: the primary, until [`rotate`](Self::rotate).
    pub fn preferred(&self) -> Side {
        self.shared.snapshot().preferred
    }

    /// How many times the serving side changed: switches to the backup, failbacks and
    /// rotations. Failed probes do not count.
    pub fn switches(&self) -> u64 {
        self.shared.switches()
    }

    /// Swaps the roles of the two sides by hand (the reference SDK's `rotate_keys`): the side
    /// that was not preferred becomes the preferred one and serves new requests at once; the
    /// other becomes its backup. Counts as a switch; returns the side that serves now.
    ///
    /// Requests already running finish where they are.
    pub fn rotate(&self) -> Side {
        self.shared.rotate()
    }

    /// Lets the next request probe the preferred side now, whatever the failback interval,
    /// also with [`Failback::Never`](crate::Failback::Never). Does nothing while the preferred
    /// side serves.
    ///
    /// Call it after fixing the preferred key, e.g. with `TokenManager::set_credentials`.
    pub fn probe_now(&self) {
        self.shared.probe_now();
    }
}

impl fmt::Debug for FallbackHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snapshot = self.shared.snapshot();
        f.debug_struct("FallbackHandle")
            .field("active", &snapshot.active)
            .field("preferred", &snapshot.preferred)
            .field("switches", &self.switches())
            .finish()
    }
}
