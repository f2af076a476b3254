//! The key pool's series: [`PoolMetrics`], a [`PoolObserver`] made by [`Metrics::pool_observer`].
//!
//! Every call touches `evolution_deployment_requests_total` and
//! `evolution_deployment_in_flight`: their keys are built once per deployment, as the
//! client's own per-call keys are (see `keys`). State changes, cooldowns and rate limits are
//! rare and use the macros.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use evolution_pool::{PoolEvent, PoolObserver, RequestOutcome};
use metrics::{Key, Label, counter, gauge};
use serde::Serialize;

use crate::Metrics;
use crate::keys::METADATA;
use crate::names::{
    DEPLOYMENT_COOLDOWNS_TOTAL, DEPLOYMENT_IN_FLIGHT, DEPLOYMENT_REQUESTS_TOTAL, DEPLOYMENT_STATE,
    LABEL_DEPLOYMENT, LABEL_KIND, LABEL_OUTCOME, LABEL_REASON, RATE_LIMITED_TOTAL,
};

/// The outcomes whose keys are built up front, in [`outcome_index`] order.
const OUTCOMES: [RequestOutcome; 7] = [
    RequestOutcome::Success,
    RequestOutcome::KeyRejected,
    RequestOutcome::RateLimited,
    RequestOutcome::ServerError,
    RequestOutcome::Failed,
    RequestOutcome::Timeout,
    RequestOutcome::Cancelled,
];

fn outcome_index(outcome: RequestOutcome) -> Option<usize> {
    OUTCOMES.iter().position(|&o| o == outcome)
}

/// One deployment's state in [`Stats::deployments`](crate::Stats::deployments).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DeploymentStats {
    /// Its name.
    pub name: String,
    /// `healthy`, `cooling` or `open`.
    pub state: &'static str,
    /// Why it is cooling or open: `key_rejected`, `rate_limited`, `circuit_open`.
    pub reason: Option<&'static str>,
    /// Seconds until it is probed again, while cooling or open.
    pub ready_in_seconds: Option<f64>,
    /// Its calls in flight.
    pub in_flight: u32,
    /// Calls it answered so far.
    pub served: u64,
}

impl DeploymentStats {
    /// A deployment's entry, from what its pool's handle says.
    pub fn from_status(status: &evolution_pool::DeploymentStatus) -> Self {
        Self {
            name: status.name.to_string(),
            state: status.state.as_str(),
            reason: status.reason.map(|reason| reason.as_str()),
            ready_in_seconds: status.ready_in.map(|d| d.as_secs_f64()),
            in_flight: status.in_flight,
            served: status.served,
        }
    }
}

/// Records a pool's [`PoolEvent`]s as the `evolution_deployment_*` series and
/// `evolution_rate_limited_total`, labelled with the deployment's name (never a key).
#[derive(Clone)]
pub struct PoolMetrics {
    metrics: Metrics,
    series: Arc<HashMap<Arc<str>, Series>>,
}

struct Series {
    requests: Vec<Key>,
    in_flight: Key,
}

impl fmt::Debug for PoolMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolMetrics")
            .field("deployments", &self.series.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// An observer of a pool of the deployments `names`, recording into this handle's
    /// series (with its constant labels). Sets each deployment's state to healthy (0).
    pub fn pool_observer<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> PoolMetrics {
        let constant = self.constant();
        let key = |name: &'static str, extra: &[Label]| {
            let labels: Vec<Label> = constant.iter().chain(extra).cloned().collect();
            Key::from_parts(name, labels).to_retained()
        };
        let mut series = HashMap::new();
        for name in names {
            let deployment = Label::new(LABEL_DEPLOYMENT, name.to_owned());
            let requests = OUTCOMES
                .iter()
                .map(|outcome| {
                    key(
                        DEPLOYMENT_REQUESTS_TOTAL,
                        &[
                            deployment.clone(),
                            Label::from_static_parts(LABEL_OUTCOME, outcome.as_str()),
                        ],
                    )
                })
                .collect();
            let in_flight = key(DEPLOYMENT_IN_FLIGHT, std::slice::from_ref(&deployment));
            gauge!(DEPLOYMENT_STATE, self.labels([deployment])).set(0.0);
            series.insert(
                Arc::from(name),
                Series {
                    requests,
                    in_flight,
                },
            );
        }
        PoolMetrics {
            metrics: self.clone(),
            series: Arc::new(series),
        }
    }
}

impl PoolObserver for PoolMetrics {
    fn on_event(&self, event: &PoolEvent<'_>) {
        let deployment_label = |name: &str| Label::new(LABEL_DEPLOYMENT, name.to_owned());
        match *event {
            PoolEvent::Sent {
                deployment,
                in_flight,
            } => self.set_in_flight(deployment, in_flight),
            PoolEvent::Finished {
                deployment,
                outcome,
                in_flight,
            } => {
                self.set_in_flight(deployment, in_flight);
                let prebuilt = self
                    .series
                    .get(deployment)
                    .zip(outcome_index(outcome))
                    .map(|(series, i)| &series.requests[i]);
                match prebuilt {
                    Some(key) => metrics::with_recorder(|recorder| {
                        recorder.register_counter(key, &METADATA).increment(1);
                    }),
                    None => counter!(
                        DEPLOYMENT_REQUESTS_TOTAL,
                        self.metrics.labels([
                            deployment_label(deployment),
                            Label::from_static_parts(LABEL_OUTCOME, outcome.as_str()),
                        ])
                    )
                    .increment(1),
                }
            }
            PoolEvent::StateChanged { deployment, to, .. } => {
                gauge!(
                    DEPLOYMENT_STATE,
                    self.metrics.labels([deployment_label(deployment)])
                )
                .set(to.gauge());
            }
            PoolEvent::Cooldown {
                deployment, reason, ..
            } => counter!(
                DEPLOYMENT_COOLDOWNS_TOTAL,
                self.metrics.labels([
                    deployment_label(deployment),
                    Label::from_static_parts(LABEL_REASON, reason.as_str()),
                ])
            )
            .increment(1),
            PoolEvent::RateLimited { deployment, kind } => counter!(
                RATE_LIMITED_TOTAL,
                self.metrics.labels([
                    deployment_label(deployment),
                    Label::from_static_parts(LABEL_KIND, kind.as_str()),
                ])
            )
            .increment(1),
            _ => {}
        }
    }
}

impl PoolMetrics {
    fn set_in_flight(&self, deployment: &str, in_flight: u32) {
        match self.series.get(deployment) {
            Some(series) => metrics::with_recorder(|recorder| {
                recorder
                    .register_gauge(&series.in_flight, &METADATA)
                    .set(f64::from(in_flight));
            }),
            None => gauge!(
                DEPLOYMENT_IN_FLIGHT,
                self.metrics
                    .labels([Label::new(LABEL_DEPLOYMENT, deployment.to_owned())])
            )
            .set(f64::from(in_flight)),
        }
    }
}
