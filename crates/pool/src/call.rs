//! One call through a [`Pool`](crate::Pool): choose, admit, send, judge, fail over.

use std::fmt;
use std::sync::Arc;

use evolution_token::BoxError;
use http::{Request, Response, StatusCode};
use tokio::time::Instant;
use tower::ServiceExt;
use tower_service::Service;

use crate::classify::{Judgement, judge};
use crate::error::{Unavailable, Waiting};
use crate::event::{PoolEvent, RequestOutcome};
use crate::health::{Admit, Change, DeploymentState, Health, Verdict, after};
use crate::limit::{RateLimits, estimate_tokens};
use crate::member::Member;
use crate::service::{AllCooling, Shared};
use crate::strategy::{Set, Strategy, Walk};

/// Which deployment answered a call, put in the response's extensions: the deployment's
/// name, and the way to correct its token limit from the answer's `usage`.
#[derive(Clone)]
pub struct Served {
    deployment: Arc<str>,
    tokens: Option<(RateLimits, u32)>,
}

impl Served {
    /// The deployment's name.
    pub fn deployment(&self) -> &str {
        &self.deployment
    }

    /// The tokens estimated for the call before it was sent (0 without a token limit).
    pub fn estimated_tokens(&self) -> u32 {
        self.tokens.as_ref().map_or(0, |(_, estimate)| *estimate)
    }

    /// Reports the tokens the call used (`usage.total_tokens`): the deployment's token
    /// limit is corrected by the difference from the estimate. Does nothing without one.
    pub fn settle(&self, total_tokens: u32) {
        if let Some((limits, estimate)) = &self.tokens {
            limits.settle(*estimate, total_tokens);
        }
    }
}

impl fmt::Debug for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Served")
            .field("deployment", &self.deployment)
            .field("estimated_tokens", &self.estimated_tokens())
            .finish()
    }
}

/// The soonest deployment to be ready, of those skipped this round.
#[derive(Clone, Copy)]
struct Soonest {
    index: usize,
    at: Instant,
    why: Waiting,
}

pub(crate) async fn run<S, ReqB, ResB>(
    shared: Arc<Shared<S>>,
    request: Request<ReqB>,
    deadline: Option<Instant>,
) -> Result<Response<ResB>, BoxError>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
    ReqB: Clone + AsRef<[u8]>,
{
    let members = &shared.members;
    let tokens = if shared.counts_tokens {
        estimate_tokens(request.body().as_ref())
    } else {
        0
    };
    let walk = Walk::new(shared.strategy, &shared.cursor, members.len());
    // Tried (and failed) this call: never again. Skipped this round: cooling or limited.
    let mut failed = Set::default();
    let mut skipped = Set::default();
    let mut last: Option<Result<Response<ResB>, BoxError>> = None;
    // Set the first time every deployment is cooling: the call waits until then at most,
    // however many times it finds them all cooling again (`max` bounds the whole wait).
    let mut wait_limit: Option<Instant> = None;
    loop {
        let mut soonest: Option<Soonest> = None;
        let mut note = |index: usize, at: Instant, why: Waiting| {
            if soonest.is_none_or(|s| at < s.at) {
                soonest = Some(Soonest { index, at, why });
            }
        };
        let mut chosen = None;
        while let Some(index) = walk.next(shared.strategy, members, failed.union(skipped)) {
            skipped.insert(index);
            let member = &members[index];
            let admit = member.health.admit(Instant::now);
            let (generation, probe) = match admit {
                Admit::No { until, reason } => {
                    note(index, until, Waiting::Cooldown(reason));
                    continue;
                }
                Admit::Yes { generation, probe } => (generation, probe),
            };
            let held = HeldProbe {
                health: &member.health,
                held: probe,
            };
            if let Some(limits) = &member.limits
                && let Err(limited) = limits.acquire(tokens).await
            {
                drop(held);
                shared.emit(&PoolEvent::RateLimited {
                    deployment: &member.name,
                    kind: limited.kind,
                });
                note(
                    index,
                    Instant::now() + limited.retry_in,
                    Waiting::RateLimit(limited.kind),
                );
                continue;
            }
            held.sent();
            chosen = Some((index, generation, probe));
            break;
        }

        let Some((index, generation, probe)) = chosen else {
            if let Some(last) = last {
                // Every deployment not cooling was tried: the last answer goes back up.
                return last;
            }
            let Some(soonest) = soonest else {
                // Unreachable: each deployment was either tried (then `last` is set) or
                // skipped with a time. Said, not assumed.
                return Err("the pool found no deployment to try".into());
            };
            let now = Instant::now();
            let unavailable = || Unavailable {
                soonest: Arc::clone(&members[soonest.index].name),
                ready_in: soonest.at.saturating_duration_since(now),
                why: soonest.why,
            };
            match shared.all_cooling {
                AllCooling::Fail => return Err(unavailable().into()),
                AllCooling::Wait { max } => {
                    let limit = *wait_limit.get_or_insert_with(|| {
                        let max = after(now, max);
                        deadline.map_or(max, |deadline| deadline.min(max))
                    });
                    if soonest.at > limit {
                        return Err(unavailable().into());
                    }
                    tokio::time::sleep_until(soonest.at).await;
                    skipped = Set::default();
                    continue;
                }
            }
        };

        let member = &members[index];
        let attempt = Attempt::start(&shared, index, generation, probe, deadline);
        let result = member
            .service
            .clone()
            .oneshot(request.clone())
            .await
            .map_err(Into::into);
        let judgement = judge(&result);
        attempt.finish(judgement, &result);
        if !judgement.failover {
            return result.map(|mut response| {
                let limits = member.limits.as_ref().filter(|l| l.counts_tokens());
                response.extensions_mut().insert(Served {
                    deployment: Arc::clone(&member.name),
                    tokens: limits.map(|limits| (limits.clone(), tokens)),
                });
                response
            });
        }
        if let Some(limits) = member.limits.as_ref().filter(|l| l.counts_tokens()) {
            // Refused: nothing was generated, only the prompt may have been read.
            limits.settle(tokens, 0);
        }
        failed.insert(index);
        last = Some(result);
    }
}

/// A probe admitted but not sent yet. It is given back unless the call goes out: when a
/// rate limit refuses the call, and when the caller leaves while the limit is being taken
/// (an await: the shared limits ask Redis). Kept, no call would probe the deployment again.
struct HeldProbe<'a> {
    health: &'a Health,
    held: bool,
}

impl HeldProbe<'_> {
    /// The call goes out: from here its [`Attempt`] gives the probe back.
    fn sent(mut self) {
        self.held = false;
    }
}

impl Drop for HeldProbe<'_> {
    fn drop(&mut self) {
        if self.held {
            self.health.release_probe();
        }
    }
}

/// One call in flight to one deployment: its load, and its verdict on the way out (a call
/// dropped before its answer is judged here too).
struct Attempt<'a, S> {
    shared: &'a Shared<S>,
    member: &'a Member<S>,
    generation: u64,
    probe: bool,
    deadline: Option<Instant>,
    /// When it was sent, under `least_loaded` only: the other strategies read no latency.
    sent_at: Option<Instant>,
    done: bool,
}

impl<'a, S> Attempt<'a, S> {
    fn start(
        shared: &'a Shared<S>,
        index: usize,
        generation: u64,
        probe: bool,
        deadline: Option<Instant>,
    ) -> Self {
        let member = &shared.members[index];
        let in_flight = member.load.start();
        shared.emit(&PoolEvent::Sent {
            deployment: &member.name,
            in_flight,
        });
        Self {
            shared,
            member,
            generation,
            probe,
            deadline,
            sent_at: (shared.strategy == Strategy::LeastLoaded).then(Instant::now),
            done: false,
        }
    }

    fn finish<B>(mut self, judgement: Judgement, result: &Result<Response<B>, BoxError>) {
        self.done = true;
        let outcome = match (judgement.verdict, result) {
            (Verdict::Served, _) => RequestOutcome::Success,
            (Verdict::KeyRejected, _) => RequestOutcome::KeyRejected,
            (Verdict::RateLimited(_), _) => RequestOutcome::RateLimited,
            (Verdict::Failed, Ok(response))
                if response.status() >= StatusCode::INTERNAL_SERVER_ERROR =>
            {
                RequestOutcome::ServerError
            }
            (Verdict::Failed | Verdict::Neutral, _) => RequestOutcome::Failed,
        };
        if judgement.verdict == Verdict::Served {
            self.member.load.serve();
            if let Some(sent_at) = self.sent_at {
                let now = Instant::now();
                let rtt = now.saturating_duration_since(sent_at);
                self.member.load.observe(rtt, now);
            }
        }
        self.end(judgement.verdict, outcome);
    }

    fn end(&self, verdict: Verdict, outcome: RequestOutcome) {
        let member = self.member;
        let in_flight = member.load.end();
        let change = member.health.record(self.generation, self.probe, verdict);
        self.shared.emit(&PoolEvent::Finished {
            deployment: &member.name,
            outcome,
            in_flight,
        });
        if let Some(change) = change {
            announce(self.shared, member, change);
        }
    }
}

impl<S> Drop for Attempt<'_, S> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Dropped before the answer: at the deadline above, a timeout (the deployment is
        // slow); before it, the caller left, which says nothing about the deployment.
        let timed_out = self
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline);
        if timed_out {
            self.end(Verdict::Failed, RequestOutcome::Timeout);
        } else {
            // `record` gives a probe's turn back (a release here first would let a second
            // probe in, whose flag `record` would then clear).
            self.end(Verdict::Neutral, RequestOutcome::Cancelled);
        }
    }
}

/// Logs and emits a state change, once.
fn announce<S>(shared: &Shared<S>, member: &Member<S>, change: Change) {
    let name = &*member.name;
    if change.from != change.to {
        shared.emit(&PoolEvent::StateChanged {
            deployment: name,
            from: change.from,
            to: change.to,
        });
    }
    match (change.cooldown, change.until) {
        (Some(reason), Some(until)) => {
            let cooldown = until.saturating_duration_since(Instant::now());
            shared.emit(&PoolEvent::Cooldown {
                deployment: name,
                reason,
                cooldown,
            });
            tracing::warn!(
                deployment = name,
                reason = reason.as_str(),
                cooldown_s = cooldown.as_secs_f64(),
                state = change.to.as_str(),
                "deployment `{name}` is skipped for {:.1} s: {reason}",
                cooldown.as_secs_f64()
            );
        }
        _ if change.to == DeploymentState::Healthy => {
            tracing::info!(deployment = name, "deployment `{name}` serves again");
        }
        _ => {}
    }
}
