//! [`RetryPolicy`]: the `tower::retry::Policy` that classifies, backs off, honours
//! `Retry-After`, respects the deadline and draws on the retry budget.

use std::sync::Arc;

use evolution_token::BoxError;
use http::{Request, Response};
use tokio::time::Instant;
use tower::retry::Policy;
use tower::retry::budget::TpsBudget;

use crate::backoff::ScheduleState;
use crate::classify::{Classify, DefaultClassifier, Retryable, error_reason};
use crate::config::RetryConfig;
use crate::error_body::ErrorBody;
use crate::future::Delay;
use crate::no_retry::NoRetry;
use crate::observe::RetryReason;
use crate::retry_after::retry_after;
use crate::shared::{Failure, GiveUp, Shared};

/// The retry policy of [`RetryLayer`](crate::RetryLayer), for `tower::retry::Retry`.
///
/// For requests `http::Request<B>` with a cloneable body (`Bytes`), responses
/// `http::Response<B>` with any body, errors [`BoxError`]. After each attempt:
///
/// 1. a success, or a failure [`C`](Classify) calls fatal, is returned as it is (an answer
///    is classified with its buffered [`ErrorBody`], when the transport left one);
/// 2. a timeout or a connection lost after the request may have reached the server is
///    returned unless [`retry_on_timeout`](crate::RetryConfigBuilder::retry_on_timeout) /
///    [`retry_ambiguous`](crate::RetryConfigBuilder::retry_ambiguous) allow a resend;
/// 3. an answer asking for a longer wait than
///    [`max_retry_after`](crate::RetryConfigBuilder::max_retry_after) is returned at once,
///    marked with a [`RetryAfterTooLong`](crate::RetryAfterTooLong) extension (unless
///    [`LongRetryAfter::RetryEarly`](crate::LongRetryAfter::RetryEarly));
/// 4. no retry once [`max_attempts`](crate::RetryConfigBuilder::max_attempts) were made;
/// 5. the wait is the backoff, or the server's `Retry-After` / `retry-after-ms` if longer;
/// 6. if a [`deadline`](crate::RetryConfigBuilder::deadline) is set and the wait would not end
///    before it, the last answer is returned now;
/// 7. the retry must be allowed by the [`TpsBudget`] shared by every clone, into which every
///    request pays when it is first sent;
/// 8. the retry is announced (a `tracing` event and each [`RetryObserver`](crate::RetryObserver))
///    and made after the wait.
///
/// Only the response head (and an [`ErrorBody`] the transport buffered) is looked at: a
/// streamed body (SSE) is retried only if the head says so, never after the body has started.
///
/// tower clones the policy for each request; the clone holds that request's attempt count,
/// start time (tokio's clock) and place in the backoff schedule. Everything else is shared.
#[derive(Debug, Clone)]
pub struct RetryPolicy<C = DefaultClassifier> {
    shared: Arc<Shared>,
    classifier: C,
    session: Session,
}

/// One request's retry state.
#[derive(Debug, Clone, Default)]
struct Session {
    /// Attempts already made and answered.
    attempts: u32,
    started: Option<Instant>,
    schedule: ScheduleState,
}

impl RetryPolicy {
    /// A policy following `config`, with the default classification and a new budget.
    pub fn new(config: RetryConfig) -> Self {
        Self {
            shared: Arc::new(Shared::new(config)),
            classifier: DefaultClassifier,
            session: Session::default(),
        }
    }
}

impl<C> RetryPolicy<C> {
    /// The same policy deciding what to retry with `classifier`.
    pub fn with_classifier<D>(self, classifier: D) -> RetryPolicy<D> {
        RetryPolicy {
            shared: self.shared,
            classifier,
            session: self.session,
        }
    }

    /// The same policy drawing on `budget`, to share one budget between several layers.
    pub fn with_budget(self, budget: Arc<TpsBudget>) -> Self {
        Self {
            shared: Arc::new(Shared::with_budget(self.shared.config.clone(), budget)),
            ..self
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RetryConfig {
        &self.shared.config
    }

    /// The retry budget every clone draws on.
    pub fn budget(&self) -> &Arc<TpsBudget> {
        &self.shared.budget
    }

    /// The classifier.
    pub fn classifier(&self) -> &C {
        &self.classifier
    }
}

impl<C, ReqBody, ResBody> Policy<Request<ReqBody>, Response<ResBody>, BoxError> for RetryPolicy<C>
where
    C: Classify,
    ReqBody: Clone,
{
    type Future = Delay;

    fn retry(
        &mut self,
        request: &mut Request<ReqBody>,
        result: &mut Result<Response<ResBody>, BoxError>,
    ) -> Option<Delay> {
        if request.extensions().get::<NoRetry>().is_some() {
            return None;
        }
        let shared = &self.shared;
        let failure = match result {
            Ok(response) => {
                let (status, headers) = (response.status(), response.headers());
                let body = response.extensions().get::<ErrorBody>();
                let body = body.map(|body| &body.bytes()[..]);
                match self.classifier.classify_answer(status, headers, body) {
                    Some(Retryable::Transient) => Failure {
                        reason: RetryReason::Status(status),
                        retry_after: retry_after(headers, shared.config.clock.now()),
                    },
                    Some(Retryable::Fatal) => {
                        tracing::debug!(%status, "not retrying: a fatal status");
                        return None;
                    }
                    None => return None,
                }
            }
            Err(error) => match self.classifier.classify_error(&**error) {
                Retryable::Transient => Failure {
                    reason: error_reason(&**error),
                    retry_after: None,
                },
                Retryable::Fatal => {
                    tracing::debug!(error = %error, "not retrying: a fatal error");
                    return None;
                }
            },
        };
        let session = &mut self.session;
        let started = *session.started.get_or_insert_with(Instant::now);
        let attempts = session.attempts + 1;
        let schedule = &mut session.schedule;
        let decision = shared.decide(attempts, started.elapsed(), failure, || {
            shared
                .config
                .schedule
                .next(attempts - 1, schedule, &shared.rng)
        });
        match decision {
            Ok(delay) => {
                session.attempts = attempts;
                Some(Delay::new(delay))
            }
            Err(GiveUp::RetryAfterTooLong(too_long)) => {
                if let Ok(response) = result {
                    response.extensions_mut().insert(too_long);
                }
                None
            }
            Err(GiveUp::Other) => None,
        }
    }

    fn clone_request(&mut self, request: &Request<ReqBody>) -> Option<Request<ReqBody>> {
        // tower calls this on the service's own policy once per call, before cloning that
        // policy for the request, and on the request's clone before each retry. The service's
        // policy never sees `retry`, so zero attempts means a new request: it starts the clock
        // and pays into the budget (once per request, not per attempt, so retries cannot fund
        // retries).
        if self.session.attempts == 0 {
            self.session.started = Some(Instant::now());
            self.shared.deposit();
        }
        // `Request<B>` is `Clone` for a cloneable body (http 1.x): the head is copied field by
        // field, the extensions included (http only stores `Clone` extensions). Empty header
        // and extension maps copy without allocating, and a `Bytes` body is a count bump.
        Some(request.clone())
    }
}
