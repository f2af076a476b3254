//! A background task that keeps the token fresh with no callers.

use tokio::task::JoinHandle;

use super::TokenManager;

/// Stops the monitor started by [`TokenManager::spawn_monitor`] when dropped.
#[derive(Debug)]
#[must_use = "the monitor stops when this guard is dropped"]
pub struct MonitorGuard {
    task: JoinHandle<()>,
}

impl MonitorGuard {
    pub(super) fn spawn(tokens: TokenManager) -> Self {
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep_until(tokens.next_due()).await;
                // Failures are logged and observed by the refresh itself, and they set the
                // backoff that `next_due` waits out: nothing more to do with them here.
                let _ = tokens.refresh_if_due().await;
            }
        });
        Self { task }
    }
}

impl Drop for MonitorGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}
