//! [`Failback`]: whether and when traffic returns to the preferred side.

use tokio::time::Duration;

/// How long traffic stays on the backup before one request probes the primary again: 5 minutes.
///
/// Long enough that a key that is really gone costs one extra request (and one IAM exchange)
/// every few minutes, short enough that a key restored by an operator is used again soon.
pub const DEFAULT_FAILBACK_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// Whether and when traffic goes back to the preferred side after a switch.
///
/// Defaults to `After(`[`DEFAULT_FAILBACK_INTERVAL`]`)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failback {
    /// After this long on the backup (counted from the switch, or from the last failed probe),
    /// one request probes the preferred side while all others keep using the backup. If the
    /// probe succeeds traffic goes back; if not, the interval starts again and the probing
    /// request is resent to the backup, so its caller does not see the failure.
    ///
    /// `Duration::ZERO` probes on the first request after every switch or failed probe.
    After(Duration),
    /// Stay on the backup until [`FallbackHandle::rotate`](crate::FallbackHandle::rotate) or
    /// [`FallbackHandle::probe_now`](crate::FallbackHandle::probe_now): the reference SDK's
    /// behaviour. The preferred side is still tried when the backup itself is rejected.
    Never,
}

impl Default for Failback {
    fn default() -> Self {
        Self::After(DEFAULT_FAILBACK_INTERVAL)
    }
}
