//! [`Fallback`]: the service.

use std::sync::Arc;
use std::task::{Context, Poll};

use evolution_token::{BoxError, TokenManager};
use http::{Request, Response};
use tower_service::Service;

use crate::event::FallbackObserver;
use crate::failback::Failback;
use crate::future::ResponseFuture;
use crate::handle::FallbackHandle;
use crate::policy::{AuthFailure, SwitchPolicy};
use crate::state::{KeyId, Shared};

/// Sends to the active side; when the primary fails with what `Pol` calls a switch condition
/// (by default a refused key: a 401/403 answer or an IAM 401/403), switches to the backup and
/// resends the same request there at once.
///
/// - **Sticky**: traffic stays on the backup, then after the [`Failback`] interval one request
///   probes the primary; success moves traffic back. [`Failback::Never`] stays for good.
/// - **One switch**: many requests failing at once on the primary switch once; each of them is
///   resent to the backup.
/// - **One error**: if the backup refuses the key too, the caller gets
///   [`BothKeysRejected`](crate::BothKeysRejected) naming both keys. When the backup is refused
///   while it serves, the primary is tried once for that request, and serves again if it
///   answers.
/// - At most two attempts per call. Anything the policy does not switch on (a 5xx under the
///   default policy) reaches the caller as it is, for the retry layer above.
///
/// Readiness: `Fallback` is always ready. Each call clones the side it goes to and drives
/// that clone to readiness inside the response future, as [`tower::util::Oneshot`] does, so
/// a side that is not in use (or not ready) never holds up the other. Backpressure from a
/// side therefore shows as a pending response future; put a concurrency limit above
/// `Fallback` if you need one.
///
/// The two sides live behind one `Arc`: cloning a `Fallback` (which a retry layer above
/// does for every call) costs one reference count however deep the sides' stacks are, and
/// a call clones only the side it uses.
///
/// Clones share one switch state; see [`handle`](Self::handle).
///
/// [`tower::util::Oneshot`]: https://docs.rs/tower/latest/tower/util/struct.Oneshot.html
#[derive(Debug)]
pub struct Fallback<P, B, Pol = AuthFailure> {
    sides: Arc<Sides<P, B>>,
    policy: Pol,
}

/// The two services a [`Fallback`] sends to (calls clone them from here), and the switch
/// state: one `Arc` for a call to clone.
#[derive(Debug)]
pub(crate) struct Sides<P, B> {
    pub(crate) primary: P,
    pub(crate) backup: B,
    pub(crate) shared: Arc<Shared>,
}

// By hand: cloning shares the sides, so `P` and `B` need not be `Clone` for it.
impl<P, B, Pol: Clone> Clone for Fallback<P, B, Pol> {
    fn clone(&self) -> Self {
        Self {
            sides: Arc::clone(&self.sides),
            policy: self.policy.clone(),
        }
    }
}

impl<P, B> Fallback<P, B> {
    /// Sends to `primary`, falls back to `backup` when the primary's key is refused.
    pub fn new(primary: P, backup: B) -> Self {
        Self::from_parts(primary, backup, AuthFailure, Arc::new(Shared::new()))
    }
}

impl<P, B, Pol> Fallback<P, B, Pol> {
    pub(crate) fn from_parts(primary: P, backup: B, policy: Pol, shared: Arc<Shared>) -> Self {
        Self {
            sides: Arc::new(Sides {
                primary,
                backup,
                shared,
            }),
            policy,
        }
    }

    /// Switches on what `policy` says instead. Defaults to [`AuthFailure`]; see
    /// [`EndpointFailure`](crate::EndpointFailure) for endpoint fallback.
    pub fn policy<Q: SwitchPolicy>(self, policy: Q) -> Fallback<P, B, Q> {
        Fallback {
            sides: self.sides,
            policy,
        }
    }

    /// When traffic goes back to the primary. Defaults to
    /// `Failback::After(`[`DEFAULT_FAILBACK_INTERVAL`](crate::DEFAULT_FAILBACK_INTERVAL)`)`, 5 minutes.
    ///
    /// Applies to the shared state: to every clone and to the handle.
    pub fn failback(self, failback: Failback) -> Self {
        self.sides.shared.set_failback(failback);
        self
    }

    /// The key ids of the two sides, for errors and logs (never a secret). Without them errors
    /// say "primary key" and "backup key" (or the key id an IAM error carries).
    pub fn key_ids(self, primary: impl Into<Arc<str>>, backup: impl Into<Arc<str>>) -> Self {
        self.sides
            .shared
            .set_key_ids(KeyId::Fixed(primary.into()), KeyId::Fixed(backup.into()));
        self
    }

    /// Takes the key ids from the sides' token managers, read when needed, so they stay right
    /// after `TokenManager::set_credentials`.
    pub fn key_ids_from(self, primary: &TokenManager, backup: &TokenManager) -> Self {
        self.sides.shared.set_key_ids(
            KeyId::Tokens(primary.clone()),
            KeyId::Tokens(backup.clone()),
        );
        self
    }

    /// Adds an observer of [`FallbackEvent`](crate::FallbackEvent)s.
    pub fn observer(self, observer: impl FallbackObserver) -> Self {
        self.sides.shared.add_observer(Arc::new(observer));
        self
    }

    /// Adds an observer already behind an `Arc`.
    pub fn shared_observer(self, observer: Arc<dyn FallbackObserver>) -> Self {
        self.sides.shared.add_observer(observer);
        self
    }

    /// A handle on the switch state: `using_primary`, `switches`, `rotate`.
    pub fn handle(&self) -> FallbackHandle {
        FallbackHandle::new(Arc::clone(&self.sides.shared))
    }

    /// The primary service.
    pub fn primary(&self) -> &P {
        &self.sides.primary
    }

    /// The backup service.
    pub fn backup(&self) -> &B {
        &self.sides.backup
    }

    /// The primary and backup services (clones of them while other clones of this
    /// `Fallback` exist).
    pub fn into_parts(self) -> (P, B)
    where
        P: Clone,
        B: Clone,
    {
        match Arc::try_unwrap(self.sides) {
            Ok(sides) => (sides.primary, sides.backup),
            Err(sides) => (sides.primary.clone(), sides.backup.clone()),
        }
    }
}

impl<P, B, Pol, ReqB, ResB> Service<Request<ReqB>> for Fallback<P, B, Pol>
where
    P: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    P::Error: Into<BoxError>,
    B: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    B::Error: Into<BoxError>,
    Pol: SwitchPolicy + Clone,
    ReqB: Clone,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = ResponseFuture<P, B, Pol, ReqB>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is driven per call, on the side the call goes to: see the type's docs.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        ResponseFuture::new(
            Arc::clone(&self.sides),
            self.policy.clone(),
            self.sides.shared.route(),
            request,
        )
    }
}
