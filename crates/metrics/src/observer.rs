//! The token observer: [`Metrics`] as an [`evolution_token::TokenObserver`].

use std::sync::Arc;

use evolution_token::{RefreshTrigger, TokenEvent, TokenObserver};
use metrics::{Label, SharedString, counter, gauge, histogram};
use tokio::time::Duration;

use crate::names::{
    LABEL_DEPLOYMENT, LABEL_KEY_ID, LABEL_RESULT, LABEL_SIDE, LABEL_TRIGGER, RESULT_FAILURE,
    RESULT_SUCCESS, TOKEN_EXPIRES_IN_SECONDS, TOKEN_REFRESH_DURATION_SECONDS,
    TOKEN_REFRESHES_TOTAL,
};
use crate::{FallbackSide, Metrics};

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
/// This is the observer of a single key. With two keys (a primary and a backup), give each
/// manager [`Metrics::token_observer`] with its side instead, so that each key has its own
/// `evolution_token_expires_in_seconds` series: one shared gauge would read whichever key
/// reported last (the backup's invalidation zeroing it while the primary is healthy).
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
        self.record_token_event(event, None);
    }
}

/// The token observer of one deployment of a key pool: [`Metrics`]' token series, each
/// labelled `deployment` with its name. From [`Metrics::deployment_token_observer`].
#[derive(Debug, Clone)]
pub struct DeploymentTokenObserver {
    metrics: Metrics,
    deployment: SharedString,
}

impl TokenObserver for DeploymentTokenObserver {
    fn on_event(&self, event: &TokenEvent) {
        let label = Label::new(LABEL_DEPLOYMENT, self.deployment.clone());
        self.metrics.record_token_event(event, Some(label));
    }
}

/// The token observer of one key of a primary/backup pair: [`Metrics`]' token series, each
/// labelled `side` (`primary` or `backup`). From [`Metrics::token_observer`].
#[derive(Debug, Clone)]
pub struct SideObserver {
    metrics: Metrics,
    side: FallbackSide,
}

impl TokenObserver for SideObserver {
    fn on_event(&self, event: &TokenEvent) {
        let label = Label::from_static_parts(LABEL_SIDE, self.side.as_str());
        self.metrics.record_token_event(event, Some(label));
    }
}

impl Metrics {
    /// A token observer for the manager of the `side` key of a primary/backup pair: the
    /// token series it records carry `side="primary"` or `side="backup"`, so that the two
    /// keys' `evolution_token_expires_in_seconds` never overwrite each other. `Stats` counts
    /// both keys' refreshes together.
    ///
    /// A label rather than "only the serving key reports": the backup's token matters
    /// while the primary serves (a failover onto a key that cannot get a token is what to
    /// alert on), and a token manager does not know which side serves.
    ///
    /// ```
    /// use evolution_metrics::{FallbackSide, Metrics};
    /// use evolution_token::{Credentials, TokenManager};
    ///
    /// let metrics = Metrics::new();
    /// let primary = TokenManager::builder(Credentials::new("key-primary", "secret"))
    ///     .observer(metrics.token_observer(FallbackSide::Primary))
    ///     .build()?;
    /// let backup = TokenManager::builder(Credentials::new("key-backup", "secret"))
    ///     .observer(metrics.token_observer(FallbackSide::Backup))
    ///     .build()?;
    /// # drop((primary, backup));
    /// # Ok::<(), evolution_token::TokenError>(())
    /// ```
    pub fn token_observer(&self, side: FallbackSide) -> SideObserver {
        SideObserver {
            metrics: self.clone(),
            side,
        }
    }

    /// A token observer for the manager of the deployment `name` of a key pool: its token
    /// series carry `deployment="name"`, so that each key's
    /// `evolution_token_expires_in_seconds` is its own.
    pub fn deployment_token_observer(&self, name: &str) -> DeploymentTokenObserver {
        DeploymentTokenObserver {
            metrics: self.clone(),
            deployment: SharedString::from(name.to_owned()),
        }
    }

    fn record_token_event(&self, event: &TokenEvent, key: Option<Label>) {
        let labels =
            |key_id: &Arc<str>, extra: usize| self.token_labels(key_id, key.clone(), extra);
        match event {
            TokenEvent::RefreshSucceeded {
                key_id,
                trigger,
                duration,
                lifetime,
                ..
            } => {
                self.record_refresh(&labels, key_id, *trigger, *duration, true);
                set_expires_in(labels(key_id, 0), *lifetime);
            }
            TokenEvent::RefreshFailed {
                key_id,
                trigger,
                duration,
                ..
            } => self.record_refresh(&labels, key_id, *trigger, *duration, false),
            TokenEvent::StaleServed {
                key_id, expires_in, ..
            } => set_expires_in(labels(key_id, 0), *expires_in),
            TokenEvent::Invalidated { key_id, .. } => {
                set_expires_in(labels(key_id, 0), Duration::ZERO);
            }
            _ => {}
        }
    }

    fn record_refresh(
        &self,
        labels: &dyn Fn(&Arc<str>, usize) -> Vec<Label>,
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
        let mut counted = labels(key_id, 2);
        counted.push(Label::from_static_parts(LABEL_RESULT, result));
        counted.push(Label::from_static_parts(LABEL_TRIGGER, trigger.as_str()));
        counter!(TOKEN_REFRESHES_TOTAL, counted).increment(1);
        histogram!(TOKEN_REFRESH_DURATION_SECONDS, labels(key_id, 0))
            .record(duration.as_secs_f64());
        self.stats_cells().record_refresh(success, duration);
    }

    /// The constant labels, then `key_id` if opted in and `side` if given, with room for
    /// `extra` more.
    fn token_labels(&self, key_id: &Arc<str>, key: Option<Label>, extra: usize) -> Vec<Label> {
        let constant = self.constant();
        let mut labels = Vec::with_capacity(constant.len() + 2 + extra);
        labels.extend_from_slice(constant);
        if self.has_key_id_label() {
            labels.push(Label::new(
                LABEL_KEY_ID,
                SharedString::from(Arc::clone(key_id)),
            ));
        }
        labels.extend(key);
        labels
    }
}

fn set_expires_in(labels: Vec<Label>, expires_in: Duration) {
    gauge!(TOKEN_EXPIRES_IN_SECONDS, labels).set(expires_in.as_secs_f64());
}
