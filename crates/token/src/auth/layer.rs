use tower_layer::Layer;

use super::Auth;
use crate::TokenManager;

/// Applies [`Auth`]: a bearer token from a [`TokenManager`] on every request.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    tokens: TokenManager,
}

impl AuthLayer {
    /// A layer that takes tokens from `tokens`.
    pub fn new(tokens: TokenManager) -> Self {
        Self { tokens }
    }
}

impl<S: Clone> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth::new(inner, self.tokens.clone())
    }
}
