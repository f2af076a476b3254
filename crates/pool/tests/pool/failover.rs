//! Failover: what moves a request to the next deployment, each at most once per call, all
//! within the deadline.

use std::io;
use std::time::Duration;

use evolution_pool::{DeploymentState, HealthConfig, Pool, RequestOutcome, Served, Strategy};
use tokio::time::Instant;
use tower::timeout::error::Elapsed;

use crate::{
    Deployments, Events, Reply, TransportError, call, call_within, changed, count_finished,
    served_by, status,
};

const EIGHT: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];

#[tokio::test(start_paused = true)]
async fn eight_refusing_deployments_are_each_tried_once_and_the_last_answer_returned() {
    for strategy in [
        Strategy::Ordered,
        Strategy::RoundRobin,
        Strategy::Weighted,
        Strategy::LeastLoaded,
    ] {
        let deployments = Deployments::new(&EIGHT);
        deployments.answer_all(Reply::Status(503));
        let events = Events::default();
        let pool = deployments
            .builder(&events)
            .strategy(strategy)
            .build()
            .unwrap();
        let start = Instant::now();
        let response = call(&pool).await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO, "{strategy}: no backoff");
        assert_eq!(deployments.calls(), [1; 8], "{strategy}");
        let log = deployments.take_log();
        assert_eq!(response.status(), 503, "{strategy}");
        assert_eq!(
            Some(&response.body().as_str()),
            log.last(),
            "{strategy}: the last answer"
        );
        assert!(
            response.extensions().get::<Served>().is_none(),
            "{strategy}: a refusal is not served"
        );
        let recorded = events.take();
        for name in EIGHT {
            assert_eq!(
                count_finished(&recorded, name, RequestOutcome::ServerError),
                1,
                "{strategy}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_ordered_failover_returns_the_last_deployments_answer() {
    let deployments = Deployments::new(&EIGHT);
    deployments.answer_all(Reply::Status(503));
    let pool = Pool::builder(deployments.members()).build().unwrap();
    let response = call(&pool).await.unwrap();
    assert_eq!(response.body(), "h");
    assert_eq!(deployments.take_log(), EIGHT);
}

#[tokio::test(start_paused = true)]
async fn hanging_deployments_end_the_call_at_the_deadline() {
    let deployments = Deployments::new(&EIGHT);
    deployments.answer_all(Reply::Hang);
    let events = Events::default();
    let pool = deployments.builder(&events).build().unwrap();
    let deadline = Duration::from_secs(5);
    let start = Instant::now();
    let error = call_within(&pool, deadline).await.unwrap_err();
    assert!(error.is::<Elapsed>(), "{error}");
    assert_eq!(start.elapsed(), deadline);
    // A deployment that does not answer is not left for another: the request may be
    // processed, so resending it is the retry layer's decision.
    assert_eq!(deployments.calls(), [1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        count_finished(&events.take(), "a", RequestOutcome::Timeout),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn slow_refusals_fail_over_until_the_deadline() {
    let deployments = Deployments::new(&EIGHT);
    deployments.answer_all(Reply::Status(503));
    for script in &deployments.scripts {
        script.delay(Duration::from_secs(2));
    }
    let events = Events::default();
    let pool = deployments.builder(&events).build().unwrap();
    let deadline = Duration::from_secs(5);
    let start = Instant::now();
    let error = call_within(&pool, deadline).await.unwrap_err();
    assert!(error.is::<Elapsed>(), "{error}");
    assert_eq!(start.elapsed(), deadline);
    // `a` refused at 2 s, `b` at 4 s; `c` was still thinking at 5 s.
    assert_eq!(deployments.calls(), [1, 1, 1, 0, 0, 0, 0, 0]);
    let recorded = events.take();
    assert_eq!(
        count_finished(&recorded, "b", RequestOutcome::ServerError),
        1
    );
    assert_eq!(count_finished(&recorded, "c", RequestOutcome::Timeout), 1);
}

#[tokio::test(start_paused = true)]
async fn the_response_names_the_deployment_that_served_it() {
    let deployments = Deployments::new(&["a", "b", "c"]);
    deployments.get(0).answer(Reply::Status(429));
    deployments.get(1).answer(Reply::Status(502));
    let pool = Pool::builder(deployments.members()).build().unwrap();
    let response = call(&pool).await.unwrap();
    let served = response.extensions().get::<Served>().unwrap();
    assert_eq!(served.deployment(), "c");
    assert_eq!(served.estimated_tokens(), 0, "no token limit: no estimate");
    assert_eq!(served_by(&pool).await, "c");

    // A 4xx other than a refusal is an answer: served, and not failed over.
    deployments.get(2).answer(Reply::Status(400));
    let response = call(&pool).await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response
            .extensions()
            .get::<Served>()
            .map(Served::deployment),
        Some("c")
    );
    // `b` refused each call (three failures: the breaker opens at five), `a` still cools.
    assert_eq!(deployments.calls(), [1, 3, 3]);
}

#[tokio::test(start_paused = true)]
async fn a_full_pool_tries_each_of_its_64_deployments_once() {
    let names: Vec<&'static str> = (0..evolution_pool::MAX_DEPLOYMENTS)
        .map(|i| &*Box::leak(format!("d{i}").into_boxed_str()))
        .collect();
    for strategy in [
        Strategy::Ordered,
        Strategy::RoundRobin,
        Strategy::Weighted,
        Strategy::LeastLoaded,
    ] {
        let deployments = Deployments::new(&names);
        deployments.answer_all(Reply::Status(503));
        let pool = Pool::builder(deployments.members())
            .strategy(strategy)
            .build()
            .unwrap();
        assert_eq!(call(&pool).await.unwrap().status(), 503, "{strategy}");
        assert_eq!(deployments.calls(), [1; 64], "{strategy}");
    }
    // In order, the 64th is reached last.
    let deployments = Deployments::new(&names);
    deployments.answer_all(Reply::Status(503));
    deployments.get(63).answer(Reply::Status(200));
    let pool = Pool::builder(deployments.members()).build().unwrap();
    assert_eq!(served_by(&pool).await, "d63");
    assert_eq!(deployments.calls(), [1; 64]);
}

#[tokio::test(start_paused = true)]
async fn a_refused_connection_fails_over_and_counts_against_the_deployment() {
    let deployments = Deployments::new(&["main", "spare"]);
    deployments
        .get(0)
        .answer(Reply::Io(io::ErrorKind::ConnectionRefused));
    let events = Events::default();
    let pool = deployments
        .builder(&events)
        .health(HealthConfig::default().breaker(2, Duration::from_secs(10), Duration::from_secs(5)))
        .build()
        .unwrap();
    // Nothing was sent: the same request goes to the next at once.
    for _ in 0..2 {
        assert_eq!(served_by(&pool).await, "spare");
    }
    let recorded = events.take();
    assert_eq!(count_finished(&recorded, "main", RequestOutcome::Failed), 2);
    assert!(recorded.contains(&changed(
        "main",
        DeploymentState::Healthy,
        DeploymentState::Open
    )));
    assert_eq!(served_by(&pool).await, "spare");
    assert_eq!(deployments.calls(), [2, 3]);
}

#[tokio::test(start_paused = true)]
async fn a_reset_connection_is_handed_back_and_counts_against_the_deployment() {
    let deployments = Deployments::new(&["main", "spare"]);
    deployments
        .get(0)
        .answer(Reply::Io(io::ErrorKind::ConnectionReset));
    let events = Events::default();
    let pool = deployments
        .builder(&events)
        .health(HealthConfig::default().breaker(2, Duration::from_secs(10), Duration::from_secs(5)))
        .build()
        .unwrap();
    // The request may have been processed: resending it is the retry layer's decision.
    for _ in 0..2 {
        let error = call(&pool).await.unwrap_err();
        assert!(error.is::<TransportError>(), "{error}");
    }
    assert_eq!(deployments.calls(), [2, 0]);
    let recorded = events.take();
    assert_eq!(count_finished(&recorded, "main", RequestOutcome::Failed), 2);
    assert_eq!(status(&pool, "main").state, DeploymentState::Open);
    assert_eq!(served_by(&pool).await, "spare");
}
