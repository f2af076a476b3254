//! [`FallbackLayer`]: the backup and the configuration, applied to a primary.

use std::sync::Arc;

use evolution_token::TokenManager;
use tower_layer::Layer;

use crate::event::FallbackObserver;
use crate::failback::Failback;
use crate::handle::FallbackHandle;
use crate::policy::{AuthFailure, SwitchPolicy};
use crate::service::Fallback;
use crate::state::{KeyId, Shared};

/// Applies [`Fallback`]: the service it wraps is the primary, the one given here the backup.
///
/// Every service this layer builds, and every clone of the layer, shares one switch state
/// and one [`FallbackHandle`].
///
/// # Example
///
/// ```
/// use evolution_fallback::{Failback, FallbackLayer};
/// use std::time::Duration;
/// use tower::ServiceBuilder;
///
/// # let primary = tower::service_fn(|_: http::Request<String>| async {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// # });
/// # let backup = primary.clone();
/// let layer = FallbackLayer::new(backup)
///     .key_ids("key-a", "key-b")
///     .failback(Failback::After(Duration::from_secs(60)));
/// let handle = layer.handle();
/// let service = ServiceBuilder::new().layer(layer).service(primary);
/// # drop((service, handle));
/// ```
#[derive(Debug, Clone)]
pub struct FallbackLayer<B, Pol = AuthFailure> {
    backup: B,
    policy: Pol,
    shared: Arc<Shared>,
}

impl<B> FallbackLayer<B> {
    /// Falls back to `backup` when the primary's key is refused.
    pub fn new(backup: B) -> Self {
        Self {
            backup,
            policy: AuthFailure,
            shared: Arc::new(Shared::new()),
        }
    }
}

impl<B, Pol> FallbackLayer<B, Pol> {
    /// Switches on what `policy` says instead. Defaults to [`AuthFailure`]; see
    /// [`EndpointFailure`](crate::EndpointFailure) for endpoint fallback.
    pub fn policy<Q: SwitchPolicy>(self, policy: Q) -> FallbackLayer<B, Q> {
        FallbackLayer {
            backup: self.backup,
            policy,
            shared: self.shared,
        }
    }

    /// When traffic goes back to the primary. Defaults to
    /// `Failback::After(`[`DEFAULT_FAILBACK_INTERVAL`](crate::DEFAULT_FAILBACK_INTERVAL)`)`, 5 minutes.
    ///
    /// Applies to the shared state: to every clone, every service built and the handle.
    pub fn failback(self, failback: Failback) -> Self {
        self.shared.set_failback(failback);
        self
    }

    /// The key ids of the two sides, for errors and logs (never a secret). Without them errors
    /// say "primary key" and "backup key" (or the key id an IAM error carries).
    pub fn key_ids(self, primary: impl Into<Arc<str>>, backup: impl Into<Arc<str>>) -> Self {
        self.shared
            .set_key_ids(KeyId::Fixed(primary.into()), KeyId::Fixed(backup.into()));
        self
    }

    /// Takes the key ids from the sides' token managers, read when needed, so they stay right
    /// after `TokenManager::set_credentials`.
    pub fn key_ids_from(self, primary: &TokenManager, backup: &TokenManager) -> Self {
        self.shared.set_key_ids(
            KeyId::Tokens(primary.clone()),
            KeyId::Tokens(backup.clone()),
        );
        self
    }

    /// Adds an observer of [`FallbackEvent`](crate::FallbackEvent)s.
    pub fn observer(self, observer: impl FallbackObserver) -> Self {
        self.shared.add_observer(Arc::new(observer));
        self
    }

    /// Adds an observer already behind an `Arc`.
    pub fn shared_observer(self, observer: Arc<dyn FallbackObserver>) -> Self {
        self.shared.add_observer(observer);
        self
    }

    /// A handle on the switch state: `using_primary`, `switches`, `rotate`.
    pub fn handle(&self) -> FallbackHandle {
        FallbackHandle::new(Arc::clone(&self.shared))
    }

    /// The backup service.
    pub fn backup(&self) -> &B {
        &self.backup
    }
}

impl<P, B: Clone, Pol: Clone> Layer<P> for FallbackLayer<B, Pol> {
    type Service = Fallback<P, B, Pol>;

    fn layer(&self, primary: P) -> Self::Service {
        Fallback::from_parts(
            primary,
            self.backup.clone(),
            self.policy.clone(),
            Arc::clone(&self.shared),
        )
    }
}
