//! Future types

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use evolution_token::BoxError;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::error::{BothKeysRejected, KeyRejected, RejectionCause};
use crate::policy::{Outcome, SwitchPolicy, SwitchReason};
use crate::service::Sides;
use crate::side::Side;
use crate::state::{ProbeGuard, Route, Shared, Snapshot};

pin_project! {
    /// Response future of [`Fallback`](crate::Fallback).
    ///
    /// At most two attempts: the side the request was routed to and, if that one fails with
    /// what the policy calls a switch condition, the other side.
    pub struct ResponseFuture<P, B, Pol, ReqB>
    where
        P: Service<Request<ReqB>>,
        B: Service<Request<ReqB>>,
    {
        #[pin]
        state: State<P::Future, B::Future, ReqB>,
        // The services; a call clones the side it goes to when it gets there.
        sides: Arc<Sides<P, B>>,
        // This call's own clone of the side it is at: one at a time, so one slot.
        driven: Driven<P, B>,
        attempt: Attempt<Pol, ReqB>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<PF, BF, ReqB> {
        // Driving `side` to readiness, as `tower::util::Oneshot` does: the side that is not
        // used is never polled, so it cannot hold the call up.
        Ready { side: Side, request: Option<Request<ReqB>> },
        Primary { #[pin] future: PF },
        Backup { #[pin] future: BF },
    }
}

/// The clone of a side that a call drives to readiness and calls.
enum Driven<P, B> {
    Neither,
    Primary(P),
    Backup(B),
}

/// What the call knows besides the futures: the route it took and what failed so far.
struct Attempt<Pol, ReqB> {
    policy: Pol,
    /// The state the request was routed under.
    seen: Snapshot,
    /// Set while this call is the failback probe of the preferred side.
    probe: Option<ProbeGuard>,
    /// The copy for the one resend; `None` once it is used.
    copy: Option<Request<ReqB>>,
    /// The first side's failure, to report both if the other side fails too.
    first: Option<Failure>,
}

struct Failure {
    side: Side,
    reason: SwitchReason,
    cause: RejectionCause,
}

enum Step<ResB, ReqB> {
    Done(Result<Response<ResB>, BoxError>),
    Resend(Side, Request<ReqB>),
}

impl<P, B, Pol, ReqB> ResponseFuture<P, B, Pol, ReqB>
where
    P: Service<Request<ReqB>>,
    B: Service<Request<ReqB>>,
    ReqB: Clone,
{
    pub(crate) fn new(
        sides: Arc<Sides<P, B>>,
        policy: Pol,
        route: Route,
        request: Request<ReqB>,
    ) -> Self {
        Self {
            state: State::Ready {
                side: route.side,
                // A plain `clone()` (http 1.x copies the head and the extensions, which
                // are all `Clone`): empty maps copy without allocating, `Bytes` by a count bump.
                request: Some(request.clone()),
            },
            sides,
            driven: Driven::Neither,
            attempt: Attempt {
                policy,
                seen: route.seen,
                probe: route.probe,
                copy: Some(request),
                first: None,
            },
        }
    }
}

impl<P, B, Pol, ReqB, ResB> Future for ResponseFuture<P, B, Pol, ReqB>
where
    P: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    P::Error: Into<BoxError>,
    B: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    B::Error: Into<BoxError>,
    Pol: SwitchPolicy,
{
    type Output = Result<Response<ResB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let (side, outcome) = match this.state.as_mut().project() {
                StateProj::Ready { side, request } => {
                    let side = *side;
                    let called = match side {
                        Side::Primary => {
                            if !matches!(this.driven, Driven::Primary(_)) {
                                *this.driven = Driven::Primary(this.sides.primary.clone());
                            }
                            let Driven::Primary(service) = this.driven else {
                                unreachable!("just set")
                            };
                            ready!(poll_call(service, request, cx))
                                .map(|future| State::Primary { future })
                        }
                        Side::Backup => {
                            if !matches!(this.driven, Driven::Backup(_)) {
                                *this.driven = Driven::Backup(this.sides.backup.clone());
                            }
                            let Driven::Backup(service) = this.driven else {
                                unreachable!("just set")
                            };
                            ready!(poll_call(service, request, cx))
                                .map(|future| State::Backup { future })
                        }
                    };
                    match called {
                        Ok(state) => {
                            this.state.set(state);
                            continue;
                        }
                        // A side that cannot become ready failed like one that answered an error.
                        Err(error) => (side, Err(error)),
                    }
                }
                StateProj::Primary { future } => {
                    (Side::Primary, ready!(future.poll(cx)).map_err(Into::into))
                }
                StateProj::Backup { future } => {
                    (Side::Backup, ready!(future.poll(cx)).map_err(Into::into))
                }
            };
            match this.attempt.decide(&this.sides.shared, side, outcome) {
                Step::Done(result) => return Poll::Ready(result),
                Step::Resend(side, request) => this.state.set(State::Ready {
                    side,
                    request: Some(request),
                }),
            }
        }
    }
}

/// Drives `service` to readiness and calls it with `request`.
fn poll_call<S, ReqB>(
    service: &mut S,
    request: &mut Option<Request<ReqB>>,
    cx: &mut Context<'_>,
) -> Poll<Result<S::Future, BoxError>>
where
    S: Service<Request<ReqB>>,
    S::Error: Into<BoxError>,
{
    if let Err(error) = ready!(service.poll_ready(cx)) {
        return Poll::Ready(Err(error.into()));
    }
    let request = request.take().expect("polled after completion");
    Poll::Ready(Ok(service.call(request)))
}

impl<Pol: SwitchPolicy, ReqB> Attempt<Pol, ReqB> {
    /// What to do with the outcome of `side`: hand it to the caller, or resend to the other side.
    fn decide<ResB>(
        &mut self,
        shared: &Shared,
        side: Side,
        outcome: Result<Response<ResB>, BoxError>,
    ) -> Step<ResB, ReqB> {
        let reason = self.policy.switch_reason(view(&outcome));
        let Some(copy) = self.copy.take() else {
            return Step::Done(self.finish(shared, side, reason, outcome));
        };
        if let Some(probe) = self.probe.take() {
            if reason.is_none() && healthy(&outcome) {
                probe.succeeded();
                return Step::Done(outcome);
            }
            // The probing caller must not pay for the probe: it gets the backup's answer.
            probe.failed(reason);
            self.first = reason.map(|reason| Failure::new(side, reason, outcome));
            return Step::Resend(side.other(), copy);
        }
        let Some(reason) = reason else {
            return Step::Done(outcome);
        };
        if !self.seen.fallen_back() {
            // Only the first failure of this generation switches; the rest just resend.
            shared.switch_away(self.seen, reason);
        }
        // On the backup and the backup was refused: the preferred side is tried once more.
        self.first = Some(Failure::new(side, reason, outcome));
        Step::Resend(side.other(), copy)
    }

    /// The outcome of the resend.
    fn finish<ResB>(
        &mut self,
        shared: &Shared,
        side: Side,
        reason: Option<SwitchReason>,
        outcome: Result<Response<ResB>, BoxError>,
    ) -> Result<Response<ResB>, BoxError> {
        let first = self.first.take();
        let Some(reason) = reason else {
            if self.seen.fallen_back() && side == self.seen.preferred && healthy(&outcome) {
                // The backup was refused and the preferred side answered: it is back.
                shared.fail_back(self.seen);
            }
            return outcome;
        };
        match first {
            Some(first) if first.reason.is_auth() && reason.is_auth() => {
                let second = Failure::new(side, reason, outcome);
                Err(Box::new(BothKeysRejected::new(
                    first.into_rejection(shared),
                    second.into_rejection(shared),
                )))
            }
            // Not both keys refused (an outage, say): the caller and the retry layer get the
            // last answer as it is.
            _ => outcome,
        }
    }
}

impl Failure {
    fn new<ResB>(
        side: Side,
        reason: SwitchReason,
        outcome: Result<Response<ResB>, BoxError>,
    ) -> Self {
        let cause = match outcome {
            Ok(response) => RejectionCause::Status(response.status()),
            Err(error) => RejectionCause::from_error(error),
        };
        Self {
            side,
            reason,
            cause,
        }
    }

    fn into_rejection(self, shared: &Shared) -> KeyRejected {
        KeyRejected::new(self.side, shared.key_id(self.side), self.reason, self.cause)
    }
}

fn view<ResB>(outcome: &Result<Response<ResB>, BoxError>) -> Outcome<'_> {
    match outcome {
        Ok(response) => Outcome::Response {
            status: response.status(),
            headers: response.headers(),
        },
        Err(error) => Outcome::Error(&**error),
    }
}

/// Good enough to go back to a side: it answered, and not with a server error.
fn healthy<ResB>(outcome: &Result<Response<ResB>, BoxError>) -> bool {
    matches!(outcome, Ok(response) if !response.status().is_server_error())
}

impl<P, B, Pol, ReqB> fmt::Debug for ResponseFuture<P, B, Pol, ReqB>
where
    P: Service<Request<ReqB>>,
    B: Service<Request<ReqB>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Ready { side, .. } => format!("ready {side}"),
            State::Primary { .. } => "calling primary".to_owned(),
            State::Backup { .. } => "calling backup".to_owned(),
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("resent", &self.attempt.copy.is_none())
            .field("probe", &self.attempt.probe.is_some())
            .finish_non_exhaustive()
    }
}
