//! The same retries for [`reqwest_middleware`] users: a [`reqwest_retry::RetryableStrategy`]
//! and a [`retry_policies::RetryPolicy`] built from one [`RetryConfig`], for
//! [`reqwest_retry::RetryTransientMiddleware`]. [`ReqwestRetryPolicy`] says how this stack
//! matches the tower layer.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest_retry::{RetryDecision, RetryTransientMiddleware, RetryableStrategy};
use tower::retry::budget::TpsBudget;

use crate::classify::{Classify, DefaultClassifier, Retryable, error_reason};
use crate::config::RetryConfig;
use crate::error_body::ErrorBody;
use crate::observe::RetryReason;
use crate::retry_after::retry_after;
use crate::shared::{Failure, Shared};

thread_local! {
    /// The last transient failure the strategy saw on this thread, for the policy call that
    /// follows it; tagged with the shared state's address so that stacks do not mix.
    static LAST_FAILURE: Cell<Option<(usize, Failure)>> = const { Cell::new(None) };
}

/// The [`retry_policies::RetryPolicy`] half: when to retry. Make its strategy with
/// [`strategy`](Self::strategy); they share a budget and must be used together.
///
/// # How it matches the tower layer
///
/// Classification (the same [`Classify`]), attempt limit, backoff, `Retry-After`, deadline,
/// budget, events and observers are the ones [`RetryLayer`](crate::RetryLayer) uses, through
/// the same code. reqwest-retry asks the strategy about each answer and then, for a transient
/// one, asks the policy when to retry, knowing only when the request started and how many
/// retries it made. So:
///
/// - the strategy hands the reason and the `Retry-After` of the answer to the policy through a
///   thread-local slot, which works because reqwest-retry (0.9) calls the policy right after
///   the strategy, with no `.await` between; used with another strategy, the policy retries on
///   backoff alone, with reason "other";
/// - a request pays into the budget when its first attempt fails or when it ends without a
///   transient failure — once per request, except that a request which is retried and then
///   succeeds pays twice (the tower layer pays exactly once, when the request is first sent).
///   A backend failing everything sees the same number of attempts from both stacks;
/// - decorrelated jitter takes the un-jittered previous delay (`base × factor^(n−1)`) in place
///   of the previous actual delay, which reqwest-retry does not keep;
/// - the deadline is measured on the wall clock ([`Clock`](crate::Clock)), from the time
///   reqwest-retry records, and the wait is the time until `execute_after`, which reqwest-retry
///   reckons with `SystemTime::now()`: in this stack the clock must be the real one.
/// - a `backoff` crate schedule (feature `backoff`) is replayed from its start for each retry;
/// - an answer not retried because its `Retry-After` is too long is handed back without the
///   [`RetryAfterTooLong`](crate::RetryAfterTooLong) mark (reqwest-retry does not let the
///   policy touch it), and an [`ErrorBody`] is only seen if a middleware below put one in the
///   response's extensions (none does by default, so a quota-exhausted 429 is retried).
#[derive(Debug, Clone)]
pub struct ReqwestRetryPolicy {
    shared: Arc<Shared>,
}

/// The [`RetryableStrategy`] half: what to retry, by `C` ([`DefaultClassifier`] unless
/// [`with_classifier`](Self::with_classifier) changed it).
#[derive(Debug, Clone)]
pub struct ReqwestRetryStrategy<C = DefaultClassifier> {
    shared: Arc<Shared>,
    classifier: C,
}

/// The middleware [`RetryConfig::into_middleware`] builds.
pub type RetryMiddleware<C = DefaultClassifier> =
    RetryTransientMiddleware<ReqwestRetryPolicy, ReqwestRetryStrategy<C>>;

impl RetryConfig {
    /// A reqwest-middleware retry middleware following this configuration, with the default
    /// classification and a new budget.
    ///
    /// ```no_run
    /// use evolution_retry::RetryConfig;
    ///
    /// # async fn run() -> Result<(), reqwest_middleware::Error> {
    /// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
    ///     .with(RetryConfig::default().into_middleware())
    ///     .build();
    /// let response = client.get("http://127.0.0.1:8080/v1/models").send().await?;
    /// # drop(response);
    /// # Ok(()) }
    /// ```
    ///
    /// Put it before (outside) the auth middleware, so that each attempt gets a valid token.
    pub fn into_middleware(self) -> RetryMiddleware {
        let policy = ReqwestRetryPolicy::new(self);
        let strategy = policy.strategy();
        RetryTransientMiddleware::new_with_policy_and_strategy(policy, strategy)
    }
}

impl ReqwestRetryPolicy {
    /// A policy following `config`, with a new budget.
    pub fn new(config: RetryConfig) -> Self {
        Self {
            shared: Arc::new(Shared::new(config)),
        }
    }

    /// The same policy drawing on `budget` (for instance a [`RetryLayer`](crate::RetryLayer)'s).
    /// Make the strategy after this call.
    pub fn with_budget(self, budget: Arc<TpsBudget>) -> Self {
        Self {
            shared: Arc::new(Shared::with_budget(self.shared.config.clone(), budget)),
        }
    }

    /// The strategy that goes with this policy, with the default classification.
    pub fn strategy(&self) -> ReqwestRetryStrategy {
        ReqwestRetryStrategy {
            shared: self.shared.clone(),
            classifier: DefaultClassifier,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RetryConfig {
        &self.shared.config
    }

    /// The retry budget.
    pub fn budget(&self) -> &Arc<TpsBudget> {
        &self.shared.budget
    }
}

impl<C> ReqwestRetryStrategy<C> {
    /// The same strategy deciding what to retry with `classifier`.
    pub fn with_classifier<D>(self, classifier: D) -> ReqwestRetryStrategy<D> {
        ReqwestRetryStrategy {
            shared: self.shared,
            classifier,
        }
    }

    /// The classifier.
    pub fn classifier(&self) -> &C {
        &self.classifier
    }
}

fn tag(shared: &Arc<Shared>) -> usize {
    Arc::as_ptr(shared).addr()
}

impl<C> RetryableStrategy for ReqwestRetryStrategy<C>
where
    C: Classify,
{
    fn handle(
        &self,
        result: &Result<reqwest::Response, reqwest_middleware::Error>,
    ) -> Option<reqwest_retry::Retryable> {
        let (class, reason) = match result {
            Ok(response) => {
                let status = response.status();
                let body = response.extensions().get::<ErrorBody>();
                let body = body.map(|body| &body.bytes()[..]);
                let class = self
                    .classifier
                    .classify_answer(status, response.headers(), body);
                (class, RetryReason::Status(status))
            }
            Err(error) => (
                Some(self.classifier.classify_error(error)),
                error_reason(error),
            ),
        };
        if class != Some(Retryable::Transient) {
            // The request ends here.
            self.shared.deposit();
            return class.map(|_| reqwest_retry::Retryable::Fatal);
        }
        let retry_after = match result {
            Ok(response) => retry_after(response.headers(), self.shared.config.clock.now()),
            Err(_) => None,
        };
        let failure = Failure {
            reason,
            retry_after,
        };
        LAST_FAILURE.set(Some((tag(&self.shared), failure)));
        Some(reqwest_retry::Retryable::Transient)
    }
}

impl retry_policies::RetryPolicy for ReqwestRetryPolicy {
    fn should_retry(&self, request_start_time: SystemTime, n_past_retries: u32) -> RetryDecision {
        let shared = &self.shared;
        let failure = match LAST_FAILURE.take() {
            Some((tag_, failure)) if tag_ == tag(shared) => failure,
            _ => Failure {
                reason: RetryReason::Other,
                retry_after: None,
            },
        };
        if n_past_retries == 0 {
            shared.deposit();
        }
        let now = shared.config.clock.now();
        let elapsed = now
            .duration_since(request_start_time)
            .unwrap_or(Duration::ZERO);
        let attempts = n_past_retries.saturating_add(1);
        let delay = shared.decide(attempts, elapsed, failure, || {
            shared
                .config
                .schedule
                .next_stateless(n_past_retries, &shared.rng)
        });
        // reqwest-retry hands the answer back unchanged: no `RetryAfterTooLong` mark here.
        let delay = delay.ok();
        match delay.and_then(|delay| now.checked_add(delay)) {
            Some(execute_after) => RetryDecision::Retry { execute_after },
            None => RetryDecision::DoNotRetry,
        }
    }
}
