//! Events for observers (metrics, logs) of the switch state.

use crate::policy::SwitchReason;
use crate::side::Side;

/// A change of the side that serves, or a failed attempt to change it.
///
/// Events name sides, never keys' secrets; every event that changes the serving side says
/// which side serves now ([`active`](Self::active)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FallbackEvent {
    /// The preferred side failed and traffic moved to the other side.
    Switched {
        /// The side that failed.
        from: Side,
        /// The side that serves now.
        to: Side,
        /// What the failure was.
        reason: SwitchReason,
    },
    /// The preferred side answered well again (a failback probe, or a resend after the
    /// backup was rejected) and traffic went back to it.
    FailedBack {
        /// The side that serves now.
        to: Side,
    },
    /// A failback probe of the preferred side failed; traffic stays and the interval restarts.
    ProbeFailed {
        /// The side that was probed (and still does not serve).
        side: Side,
        /// What the policy called the failure, or `None` for a failure it does not switch on
        /// (a 5xx or an error under the default policy).
        reason: Option<SwitchReason>,
    },
    /// The roles were swapped by hand ([`FallbackHandle::rotate`](crate::FallbackHandle::rotate)).
    Rotated {
        /// The side that is preferred and serves now.
        to: Side,
    },
}

impl FallbackEvent {
    /// The side serving after this event: for a gauge such as `evolution_fallback_active`.
    pub fn active(&self) -> Side {
        match *self {
            Self::Switched { to, .. } | Self::FailedBack { to } | Self::Rotated { to } => to,
            Self::ProbeFailed { side, .. } => side.other(),
        }
    }

    /// Whether this event changed the serving side (counted by
    /// [`FallbackHandle::switches`](crate::FallbackHandle::switches)).
    pub fn is_switch(&self) -> bool {
        !matches!(self, Self::ProbeFailed { .. })
    }

    /// A short snake_case name, stable for metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Switched { .. } => "switched",
            Self::FailedBack { .. } => "failed_back",
            Self::ProbeFailed { .. } => "probe_failed",
            Self::Rotated { .. } => "rotated",
        }
    }
}

/// Receives [`FallbackEvent`]s. Called inline, after the state changed and outside any lock:
/// keep it cheap and never block.
///
/// Any `Fn(&FallbackEvent) + Send + Sync` is an observer:
///
/// ```
/// use evolution_fallback::{FallbackEvent, FallbackLayer, Side};
///
/// # let backup = tower::service_fn(|_: http::Request<String>| async {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// # });
/// let layer = FallbackLayer::new(backup).observer(|event: &FallbackEvent| {
///     let on_backup = event.active() == Side::Backup;
///     eprintln!("{} (on backup: {on_backup})", event.as_str());
/// });
/// # drop(layer);
/// ```
pub trait FallbackObserver: Send + Sync + 'static {
    /// Called for every event.
    fn on_event(&self, event: &FallbackEvent);
}

impl<F> FallbackObserver for F
where
    F: Fn(&FallbackEvent) + Send + Sync + 'static,
{
    fn on_event(&self, event: &FallbackEvent) {
        self(event)
    }
}
