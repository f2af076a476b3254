//! One refresh, in its own task: the IAM exchange (through the shared cache when there is
//! one), then the outcome recorded and sent to every caller waiting for it.
//!
//! The task always settles its refresh, however it ends. If code it runs panics (an
//! observer, a token store) the panic is caught; if the task is dropped unfinished (its
//! runtime shut down, or was shutting down when it was spawned) its `Drop` settles it. Either
//! way the refresh counts as failed, its waiters get [`TokenError::Aborted`] saying why, and
//! the next refresh may start once the backoff allows: a dead task never leaves a refresh
//! "in flight" for ever.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::time::{Duration, Instant};

use super::{Outcome, Shared};
use crate::error::AbortReason;
use crate::{AccessToken, Credentials, RefreshTrigger, TokenError, TokenEvent};

/// A refresh ready to run; [`spawn`](Self::spawn) it once the refresh lock is released.
pub(super) struct RefreshTask {
    pub(super) shared: Arc<Shared>,
    pub(super) runtime: Handle,
    pub(super) id: u64,
    /// The key rotation epoch it started in: a later key's cache must not get its token.
    pub(super) epoch: u64,
    pub(super) trigger: RefreshTrigger,
    pub(super) credentials: Arc<Credentials>,
    /// The token the API rejected, if that is why this refresh runs.
    pub(super) rejected: Option<AccessToken>,
    pub(super) result: watch::Sender<Option<Outcome>>,
    pub(super) settled: bool,
}

impl RefreshTask {
    /// Runs the refresh in its own task: a caller that is dropped mid-refresh cancels nothing.
    ///
    /// Not under the refresh lock: spawning on a runtime that is shutting down drops the
    /// task at once, and its `Drop` takes that lock.
    pub(super) fn spawn(self) {
        let runtime = self.runtime.clone();
        drop(runtime.spawn(self.run()));
    }

    async fn run(mut self) {
        let shared = Arc::clone(&self.shared);
        let key_id = self.credentials.shared_key_id();
        let trigger = self.trigger;
        tracing::debug!(
            key_id = &*key_id,
            trigger = trigger.as_str(),
            "token refresh started"
        );
        let started = Instant::now();
        let obtained = AssertUnwindSafe(async {
            shared.observers.emit(TokenEvent::RefreshStarted {
                key_id: key_id.clone(),
                trigger,
            });
            shared
                .obtain(&self.credentials, trigger, self.rejected.as_ref())
                .await
        })
        .catch_unwind()
        .await
        .unwrap_or_else(|_panic| {
            Err(TokenError::Aborted {
                reason: AbortReason::Panicked,
            })
        });
        let duration = started.elapsed();
        let settled = self.settle(obtained);

        // The waiters have their answer: an observer that panics now costs nothing more.
        let event = match settled {
            Ok(lifetime) => {
                tracing::debug!(
                    key_id = &*key_id,
                    trigger = trigger.as_str(),
                    ?duration,
                    ?lifetime,
                    "token refreshed"
                );
                TokenEvent::RefreshSucceeded {
                    key_id,
                    trigger,
                    duration,
                    lifetime,
                }
            }
            Err(error) => {
                tracing::warn!(
                    key_id = &*key_id,
                    trigger = trigger.as_str(),
                    ?duration,
                    %error,
                    "token refresh failed"
                );
                TokenEvent::RefreshFailed {
                    key_id,
                    trigger,
                    duration,
                    error: error.kind(),
                }
            }
        };
        let emitted = std::panic::catch_unwind(AssertUnwindSafe(|| shared.observers.emit(event)));
        if emitted.is_err() {
            tracing::error!(trigger = trigger.as_str(), "a token observer panicked");
        }
    }

    /// Records the outcome in the manager and answers the waiters; returns the granted
    /// lifetime or the error, for the event. Runs no user code.
    fn settle(
        &mut self,
        obtained: Result<(AccessToken, Duration), TokenError>,
    ) -> Result<Duration, TokenError> {
        let lifetime = obtained.as_ref().ok().map(|(_, lifetime)| *lifetime);
        let outcome = self.shared.settle(self.id, self.epoch, obtained);
        self.settled = true;
        // Nobody may be waiting any more: fine.
        let _ = self.result.send(Some(outcome.clone()));
        outcome.map(|_| lifetime.unwrap_or_default())
    }
}

impl Drop for RefreshTask {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        // Unwinding means a panic escaped the task (it is caught inside; belt and braces);
        // otherwise the task was dropped unfinished, which only its runtime does.
        let reason = if std::thread::panicking() {
            AbortReason::Panicked
        } else {
            AbortReason::RuntimeShutdown
        };
        tracing::warn!(
            key_id = self.credentials.key_id(),
            trigger = self.trigger.as_str(),
            %reason,
            "token refresh aborted"
        );
        let _ = self.settle(Err(TokenError::Aborted { reason }));
    }
}
