//! The token observer: [`Metrics`] as an [`evolution_token::TokenObserver`].

use std::sync::Arc;

use evolution_token::{RefreshTrigger, TokenEvent, TokenObserver};
use metrics::{Label, SharedString, counter, gauge, histogram};
use tokio::time::Duration;

use crate::Metrics;
use crate::names::{
    LABEL_KEY_ID, LABEL_RESULT, LABEL_TRIGGER, RESULT_FAILURE, RESULT_SUCCESS,
    TOKEN_EXPIRES_IN_SECONDS, TOKEN_REFRESH_DURATION_SECONDS, TOKEN_REFRESHES_TOTAL,
};

/// Token metrics, from a [`TokenManager`](evolution_token::TokenManager)'s events:
///
/// - `RefreshSucceeded`: `evolution_token_refreshes_total{result="success",trigger}`,
///   `evolution_token_refresh_duration_seconds`, and `evolution_token_expires_in_seconds`
///   set to the granted lifetime;
/// - `RefreshFailed`: `evolution_token_refreshes_total{result="failure",trigger}` and
///   `evolution_token_refresh_duration_seconds`;
/// - `StaleServed`: `evolution_token_expires_in_seconds` set to the remaining lifetime;
/// - `Invalidated`: `evolution_token_expires_in_seconds` set to 0 (no usable token);
/// - `RefreshStarted`: nothing (the finished refresh is counted).
///
/// With [`key_id_label`](crate::MetricsBuilder::key_id_label), these series also carry
/// `key_id`. Events never carry a secret or a token, so none can become a label.
///
/// ```
/// use evolution_metrics::Metrics;
/// use evolution_token::{Credentials, TokenManager};
///
/// let metrics = Metrics::new();
/// let tokens = TokenManager::builder(Credentials::new("key-id", "secret"))
///     .observer(metrics.clone())
///     .build()?;
/// # drop(tokens);
/// # Ok::<(), evolution_token::TokenError>(())
/// ```
impl TokenObserver for Metrics {
    fn on_event(&self, event: &TokenEvent) {
        match event {
            TokenEvent::RefreshSucceeded {
                key_id,
                trigger,
                duration,
                lifetime,
                ..
            } => {
                self.record_refresh(key_id, *trigger, *duration, true);
                self.set_expires_in(key_id, *lifetime);
            }
            TokenEvent::RefreshFailed {
                key_id,
                trigger,
                duration,
                ..
            } => self.record_refresh(key_id, *trigger, *duration, false),
            TokenEvent::StaleServed {
                key_id, expires_in, ..
            } => self.set_expires_in(key_id, *expires_in),
            TokenEvent::Invalidated { key_id, .. } => self.set_expires_in(key_id, Duration::ZERO),
            _ => {}
        }
    }
}

impl Metrics {
    fn record_refresh(
        &self,
        key_id: &Arc<str>,
        trigger: RefreshTrigger,
        duration: Duration,
        success: bool,
    ) {
        let result = if success {
            RESULT_SUCCESS
        } else {
            RESULT_FAILURE
        };
        let mut labels = self.token_labels(key_id, 2);
        labels.push(Label::from_static_parts(LABEL_RESULT, result));
        labels.push(Label::from_static_parts(LABEL_TRIGGER, trigger.as_str()));
        counter!(TOKEN_REFRESHES_TOTAL, labels).increment(1);
        histogram!(TOKEN_REFRESH_DURATION_SECONDS, self.token_labels(key_id, 0))
            .record(duration.as_secs_f64());
        self.stats_cells().record_refresh(success, duration);
    }

    fn set_expires_in(&self, key_id: &Arc<str>, expires_in: Duration) {
        gauge!(TOKEN_EXPIRES_IN_SECONDS, self.token_labels(key_id, 0))
            .set(expires_in.as_secs_f64());
    }

    /// The constant labels, then `key_id` if opted in, with room for `extra` more.
    fn token_labels(&self, key_id: &Arc<str>, extra: usize) -> Vec<Label> {
        let constant = self.constant();
        let mut labels = Vec::with_capacity(constant.len() + 1 + extra);
        labels.extend_from_slice(constant);
        if self.has_key_id_label() {
            labels.push(Label::new(
                LABEL_KEY_ID,
                SharedString::from(Arc::clone(key_id)),
            ));
        }
        labels
    }
}
