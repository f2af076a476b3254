use std::time::Duration;

use tower_layer::Layer;

use super::Deadline;

/// Applies [`Deadline`]: a time limit for each call that the layers below can see.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    limit: Duration,
}

impl DeadlineLayer {
    /// A layer limiting each call to `limit`.
    pub fn new(limit: Duration) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline::new(inner, self.limit)
    }
}
