//! Calls dropped before their answer: at the deadline above the pool, a timeout that counts
//! against the deployment; before it, a caller that left, which does not.

use std::time::Duration;

use evolution_pool::{CooldownReason, DeploymentState, HealthConfig, Pool, RequestOutcome};
use tokio::time::Instant;
use tower::timeout::error::Elapsed;

use crate::{
    Deployments, Event, Events, Reply, Stack, call, call_within, changed, cooldown, count_finished,
    served_by, status,
};

const DEADLINE: Duration = Duration::from_secs(2);
const OPEN: Duration = Duration::from_secs(5);

/// `main` never answering and `spare` 200, under a breaker of 2 failures in 60 s.
fn hanging() -> (Deployments, Events, Pool<Stack>) {
    let deployments = Deployments::new(&["main", "spare"]);
    deployments.get(0).answer(Reply::Hang);
    let events = Events::default();
    let pool = deployments
        .builder(&events)
        .health(HealthConfig::default().breaker(2, Duration::from_secs(60), OPEN))
        .build()
        .unwrap();
    (deployments, events, pool)
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_at_the_deadline_is_a_timeout_against_the_deployment() {
    let (deployments, events, pool) = hanging();
    let start = Instant::now();
    let pending = tokio::spawn(call_within(&pool, DEADLINE));
    tokio::time::sleep(DEADLINE / 2).await;
    assert_eq!(status(&pool, "main").in_flight, 1);
    let error = pending.await.unwrap().unwrap_err();
    assert!(error.is::<Elapsed>(), "{error}");
    assert_eq!(start.elapsed(), DEADLINE);
    assert_eq!(deployments.calls(), [1, 0], "a timeout is handed back");
    let recorded = events.take();
    assert_eq!(
        count_finished(&recorded, "main", RequestOutcome::Timeout),
        1
    );
    assert_eq!(status(&pool, "main").in_flight, 0);

    // The second timeout opens the circuit.
    call_within(&pool, DEADLINE).await.unwrap_err();
    assert_eq!(
        events.take_health(),
        [
            changed("main", DeploymentState::Healthy, DeploymentState::Open),
            cooldown("main", CooldownReason::CircuitOpen, 5)
        ]
    );
    assert_eq!(served_by(&pool).await, "spare");
    assert_eq!(deployments.calls(), [2, 1]);
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_leaves_before_the_deadline_does_not_count() {
    let (deployments, events, pool) = hanging();
    for _ in 0..5 {
        let left = tokio::time::timeout(Duration::from_secs(1), call_within(&pool, DEADLINE)).await;
        assert!(left.is_err(), "the caller left");
    }
    assert_eq!(deployments.calls(), [5, 0]);
    let recorded = events.take();
    assert_eq!(
        count_finished(&recorded, "main", RequestOutcome::Cancelled),
        5
    );
    assert!(
        !recorded
            .iter()
            .any(|e| matches!(e, Event::Changed(..) | Event::Cooldown(..))),
        "{recorded:?}"
    );
    let main = status(&pool, "main");
    assert_eq!((main.state, main.in_flight), (DeploymentState::Healthy, 0));
}

#[tokio::test(start_paused = true)]
async fn a_caller_without_a_deadline_that_leaves_does_not_count() {
    let (deployments, events, pool) = hanging();
    for _ in 0..3 {
        let left = tokio::time::timeout(Duration::from_secs(1), call(&pool)).await;
        assert!(left.is_err());
    }
    assert_eq!(deployments.calls(), [3, 0]);
    assert_eq!(
        count_finished(&events.take(), "main", RequestOutcome::Cancelled),
        3
    );
    assert_eq!(status(&pool, "main").state, DeploymentState::Healthy);
}

/// Opens `main`'s circuit by two timeouts and waits until it may be probed.
async fn open_until_probe(pool: &Pool<Stack>, events: &Events) {
    for _ in 0..2 {
        call_within(pool, DEADLINE).await.unwrap_err();
    }
    assert_eq!(status(pool, "main").state, DeploymentState::Open);
    tokio::time::advance(OPEN).await;
    events.take();
}

#[tokio::test(start_paused = true)]
async fn a_probe_whose_caller_left_is_released() {
    let (deployments, events, pool) = hanging();
    open_until_probe(&pool, &events).await;

    // The probe's caller leaves: the probe says nothing, and is given back.
    let left = tokio::time::timeout(Duration::from_secs(1), call_within(&pool, DEADLINE)).await;
    assert!(left.is_err());
    assert_eq!(deployments.calls(), [3, 0]);
    assert_eq!(
        events.take(),
        [
            Event::Sent("main".into(), 1),
            crate::finished("main", RequestOutcome::Cancelled)
        ]
    );
    assert_eq!(status(&pool, "main").state, DeploymentState::Open);

    // So the next call probes at once, and closes the circuit.
    deployments.get(0).answer(Reply::Status(200));
    assert_eq!(served_by(&pool).await, "main");
    assert_eq!(deployments.calls(), [4, 0]);
    assert_eq!(
        events.take_health(),
        [changed(
            "main",
            DeploymentState::Open,
            DeploymentState::Healthy
        )]
    );
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_times_out_reopens_the_circuit() {
    let (deployments, events, pool) = hanging();
    open_until_probe(&pool, &events).await;
    let start = Instant::now();
    call_within(&pool, DEADLINE).await.unwrap_err();
    assert_eq!(start.elapsed(), DEADLINE);
    let recorded = events.take();
    assert_eq!(
        count_finished(&recorded, "main", RequestOutcome::Timeout),
        1
    );
    assert!(recorded.contains(&cooldown("main", CooldownReason::CircuitOpen, 5)));
    assert_eq!(status(&pool, "main").ready_in, Some(OPEN));
    assert_eq!(served_by(&pool).await, "spare");
    assert_eq!(deployments.calls(), [3, 1]);
}
