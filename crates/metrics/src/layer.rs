//! [`MetricsLayer`].

use tower_layer::Layer;

use crate::{Metrics, MetricsService};

/// Applies [`MetricsService`]: one observation per logical call. Place it outermost.
/// See the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    metrics: Metrics,
}

impl MetricsLayer {
    /// A layer recording into `metrics` (also [`Metrics::layer`]).
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }

    /// The handle it records into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService::new(inner, self.metrics.clone())
    }
}
