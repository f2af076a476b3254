//! Bearer authentication as a tower middleware.
//!
//! [`Auth`] sets `Authorization: Bearer <token>` (marked sensitive) from a
//! [`TokenManager`]. When the server answers 401 — the token was revoked or expired
//! early — it invalidates that token (only if it is still the current one), takes a
//! fresh one and sends the request once more, so the caller never sees it.
//! A 403 is an answer about permissions, not about the token: it is passed through.
//!
//! `Auth` sets no time limit of its own. Put a [`Deadline`](crate::Deadline) above it: the
//! wait for a token (and for the shared cache's lock), the request and the resend after a 401
//! then share the deadline's limit, and a wait for a token that outlasts it ends with
//! [`TokenError::Deadline`](crate::TokenError::Deadline), which says IAM did not answer.
//!
//! # Example
//!
//! ```no_run
//! use bytes::Bytes;
//! use std::time::Duration;
//! use evolution_token::{AuthLayer, Credentials, DeadlineLayer, TokenManager};
//! use tower::{ServiceBuilder, service_fn};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let tokens = TokenManager::builder(Credentials::from_env()?).build()?;
//! let transport = service_fn(|request: http::Request<Bytes>| async move {
//!     // send `request` with your HTTP client here
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::new()))
//! });
//! let service = ServiceBuilder::new()
//!     .layer(DeadlineLayer::new(Duration::from_secs(60)))
//!     .layer(AuthLayer::new(tokens))
//!     .service(transport);
//! # drop(service);
//! # Ok(()) }
//! ```

pub mod future;
mod layer;

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use self::future::ResponseFuture;
pub use self::layer::AuthLayer;
use crate::{BoxError, TokenManager};

/// Adds a bearer token to each request and resends once on a 401. See the [module docs](self).
///
/// A call with a cached token goes straight to the inner service that was driven to
/// readiness; the response future keeps only a shared handle, from which the rare resend
/// (and a call that must wait for a token first) takes its own clone of the service.
#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    shared: Arc<Shared<S>>,
}

/// What every call of one [`Auth`] may need after its first send.
#[derive(Debug)]
pub(crate) struct Shared<S> {
    pub(crate) tokens: TokenManager,
    /// Cloned for a resend after a 401.
    pub(crate) service: S,
}

impl<S: Clone> Auth<S> {
    /// Wraps `inner`, taking tokens from `tokens`.
    pub fn new(inner: S, tokens: TokenManager) -> Self {
        let shared = Arc::new(Shared {
            tokens,
            service: inner.clone(),
        });
        Self { inner, shared }
    }
}

impl<S> Auth<S> {
    /// The token manager in use.
    pub fn tokens(&self) -> &TokenManager {
        &self.shared.tokens
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Auth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    ReqBody: Clone,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        ResponseFuture::new(&mut self.inner, Arc::clone(&self.shared), request)
    }
}
