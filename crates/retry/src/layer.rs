use std::sync::Arc;

use tower::retry::Retry;
use tower::retry::budget::TpsBudget;
use tower_layer::Layer;

use crate::classify::DefaultClassifier;
use crate::config::RetryConfig;
use crate::policy::RetryPolicy;

/// Applies `tower::retry::Retry` with a [`RetryPolicy`] built from a [`RetryConfig`].
///
/// The layer makes one retry budget; the layer's clones and every service it makes share it,
/// so all of them together cannot exceed it.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use evolution_retry::{RetryConfig, RetryLayer};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let config = RetryConfig::builder().max_attempts(4).build()?;
/// let service = ServiceBuilder::new()
///     .layer(RetryLayer::new(config))
///     .service(service_fn(|_: http::Request<Bytes>| async {
///         let response = http::Response::builder().status(200).body(Bytes::new())?;
///         Ok::<_, evolution_retry::BoxError>(response)
///     }));
/// let response = service.oneshot(http::Request::new(Bytes::new())).await?;
/// assert_eq!(response.status(), 200);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RetryLayer<C = DefaultClassifier> {
    policy: RetryPolicy<C>,
}

impl RetryLayer {
    /// A layer retrying as `config` says, with the default classification and a new budget.
    pub fn new(config: RetryConfig) -> Self {
        Self::from_policy(RetryPolicy::new(config))
    }
}

impl Default for RetryLayer {
    fn default() -> Self {
        Self::new(RetryConfig::default())
    }
}

impl From<RetryConfig> for RetryLayer {
    fn from(config: RetryConfig) -> Self {
        Self::new(config)
    }
}

impl<C> RetryLayer<C> {
    /// A layer applying `policy`.
    pub fn from_policy(policy: RetryPolicy<C>) -> Self {
        Self { policy }
    }

    /// The same layer deciding what to retry with `classifier`.
    pub fn with_classifier<D>(self, classifier: D) -> RetryLayer<D> {
        RetryLayer {
            policy: self.policy.with_classifier(classifier),
        }
    }

    /// The same layer drawing on `budget`, to share one budget between several layers.
    pub fn with_budget(self, budget: Arc<TpsBudget>) -> Self {
        Self {
            policy: self.policy.with_budget(budget),
        }
    }

    /// The policy each service gets a clone of.
    pub fn policy(&self) -> &RetryPolicy<C> {
        &self.policy
    }

    /// The configuration.
    pub fn config(&self) -> &RetryConfig {
        self.policy.config()
    }

    /// The retry budget shared by every service this layer makes.
    pub fn budget(&self) -> &Arc<TpsBudget> {
        self.policy.budget()
    }
}

impl<S, C: Clone> Layer<S> for RetryLayer<C> {
    type Service = Retry<RetryPolicy<C>, S>;

    fn layer(&self, service: S) -> Self::Service {
        Retry::new(self.policy.clone(), service)
    }
}
