//! The circuit breaker: it opens after N failures within its window, probes half-open,
//! reopens or closes, and each of those is one state change however many callers saw it.

use std::time::Duration;

use evolution_pool::{CooldownReason, DeploymentState, HealthConfig, Pool, RequestOutcome};

use crate::{
    Deployments, Event, Events, Reply, Stack, changed, concurrent, cooldown, count_finished,
    peak_in_flight, served_by, status,
};

const WINDOW: Duration = Duration::from_secs(10);
const OPEN: Duration = Duration::from_secs(5);

/// `main` answering 503 and `spare` 200, under a breaker of 3 failures in 10 s, open 5 s.
fn failing() -> (Deployments, Events, Pool<Stack>) {
    let deployments = Deployments::new(&["main", "spare"]);
    deployments.get(0).answer(Reply::Status(503));
    let events = Events::default();
    let pool = deployments
        .builder(&events)
        .health(HealthConfig::default().breaker(3, WINDOW, OPEN))
        .build()
        .unwrap();
    (deployments, events, pool)
}

#[tokio::test(start_paused = true)]
async fn it_opens_after_n_failures_within_the_window() {
    let (deployments, events, pool) = failing();
    for _ in 0..2 {
        assert_eq!(served_by(&pool).await, "spare");
        tokio::time::advance(Duration::from_secs(4)).await;
    }
    assert_eq!(status(&pool, "main").state, DeploymentState::Healthy);
    assert_eq!(events.take_health(), []);

    // The third within 10 s (at 8 s) opens it.
    assert_eq!(served_by(&pool).await, "spare");
    let recorded = events.take();
    assert_eq!(
        count_finished(&recorded, "main", RequestOutcome::ServerError),
        1
    );
    assert!(recorded.contains(&changed(
        "main",
        DeploymentState::Healthy,
        DeploymentState::Open
    )));
    assert!(recorded.contains(&cooldown("main", CooldownReason::CircuitOpen, 5)));
    let main = status(&pool, "main");
    assert_eq!(
        (main.state, main.reason, main.ready_in),
        (
            DeploymentState::Open,
            Some(CooldownReason::CircuitOpen),
            Some(OPEN)
        )
    );
    assert_eq!(pool.handle().healthy(), 1);
    for _ in 0..10 {
        assert_eq!(served_by(&pool).await, "spare");
    }
    assert_eq!(deployments.calls(), [3, 13]);
}

#[tokio::test(start_paused = true)]
async fn failures_spread_over_more_than_the_window_do_not_open_it() {
    let (deployments, events, pool) = failing();
    // Never 3 within 10 s: one every 6 s.
    for _ in 0..6 {
        assert_eq!(served_by(&pool).await, "spare");
        tokio::time::advance(Duration::from_secs(6)).await;
    }
    assert_eq!(deployments.calls(), [6, 6]);
    assert_eq!(events.take_health(), []);
    assert_eq!(status(&pool, "main").state, DeploymentState::Healthy);
}

#[tokio::test(start_paused = true)]
async fn the_window_slides_with_the_failures() {
    let (deployments, events, pool) = failing();
    // Failures at 0, 9, 11 and 12 s: the last three are within 10 s.
    for wait in [9, 2, 1] {
        assert_eq!(served_by(&pool).await, "spare");
        tokio::time::advance(Duration::from_secs(wait)).await;
    }
    assert_eq!(events.take_health(), []);
    assert_eq!(served_by(&pool).await, "spare");
    assert_eq!(
        events.take_health(),
        [
            changed("main", DeploymentState::Healthy, DeploymentState::Open),
            cooldown("main", CooldownReason::CircuitOpen, 5)
        ]
    );
    assert_eq!(deployments.calls(), [4, 4]);
}

#[tokio::test(start_paused = true)]
async fn a_success_starts_the_count_again() {
    let (deployments, events, pool) = failing();
    for _ in 0..2 {
        served_by(&pool).await;
    }
    deployments.get(0).answer(Reply::Status(200));
    assert_eq!(served_by(&pool).await, "main");
    deployments.get(0).answer(Reply::Status(503));
    for _ in 0..2 {
        served_by(&pool).await;
    }
    assert_eq!(events.take_health(), []);
    served_by(&pool).await;
    assert_eq!(status(&pool, "main").state, DeploymentState::Open);
    assert_eq!(deployments.calls(), [6, 5]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_half_open_probe_reopens_and_a_good_one_closes() {
    let (deployments, events, pool) = failing();
    for _ in 0..3 {
        served_by(&pool).await;
    }
    assert_eq!(status(&pool, "main").state, DeploymentState::Open);
    events.take();

    // Half-open after `OPEN`: one probe, which fails: open again for `OPEN`.
    tokio::time::advance(OPEN).await;
    assert_eq!(served_by(&pool).await, "spare");
    assert_eq!(deployments.calls(), [4, 4]);
    assert_eq!(
        events.take_health(),
        [cooldown("main", CooldownReason::CircuitOpen, 5)]
    );
    assert_eq!(status(&pool, "main").ready_in, Some(OPEN));
    tokio::time::advance(OPEN - Duration::from_millis(1)).await;
    assert_eq!(served_by(&pool).await, "spare");
    assert_eq!(deployments.calls(), [4, 5]);

    // The next probe succeeds: closed.
    tokio::time::advance(Duration::from_millis(1)).await;
    deployments.get(0).answer(Reply::Status(200));
    assert_eq!(served_by(&pool).await, "main");
    assert_eq!(
        events.take_health(),
        [changed(
            "main",
            DeploymentState::Open,
            DeploymentState::Healthy
        )]
    );
    assert_eq!(served_by(&pool).await, "main");
    assert_eq!(deployments.calls(), [6, 5]);

    // Closed means counting from zero: two failures do not reopen it.
    deployments.get(0).answer(Reply::Status(503));
    for _ in 0..2 {
        served_by(&pool).await;
    }
    assert_eq!(status(&pool, "main").state, DeploymentState::Healthy);
}

/// Issue 19: under 64 concurrent callers, each event causes exactly one state change.
#[tokio::test(start_paused = true)]
async fn under_64_concurrent_callers_each_event_is_one_state_change() {
    let (deployments, events, pool) = failing();
    // Every answer takes 1 s, so that the 64 calls are in flight together.
    deployments.get(0).delay(Duration::from_secs(1));

    // 64 failures at once: one opening.
    let results = concurrent(&pool, 64).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(deployments.calls(), [64, 64]);
    let recorded = events.take();
    assert_eq!(peak_in_flight(&recorded, "main"), 64);
    assert_eq!(
        count_finished(&recorded, "main", RequestOutcome::ServerError),
        64
    );
    let health: Vec<_> = recorded
        .into_iter()
        .filter(|e| matches!(e, Event::Changed(..) | Event::Cooldown(..)))
        .collect();
    assert_eq!(
        health,
        [
            changed("main", DeploymentState::Healthy, DeploymentState::Open),
            cooldown("main", CooldownReason::CircuitOpen, 5)
        ]
    );

    // Half-open: 64 callers, one probe, which fails (and fails over): one reopening.
    tokio::time::advance(OPEN).await;
    concurrent(&pool, 64).await;
    assert_eq!(deployments.calls(), [65, 128]);
    assert_eq!(
        events.take_health(),
        [cooldown("main", CooldownReason::CircuitOpen, 5)]
    );

    // Half-open again: one probe, which succeeds: one closing.
    tokio::time::advance(OPEN).await;
    deployments.get(0).answer(Reply::Status(200));
    concurrent(&pool, 64).await;
    assert_eq!(deployments.calls(), [66, 191]);
    assert_eq!(
        events.take_health(),
        [changed(
            "main",
            DeploymentState::Open,
            DeploymentState::Healthy
        )]
    );

    // Closed: 64 callers all reach it, and nothing changes.
    let results = concurrent(&pool, 64).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(deployments.calls(), [130, 191]);
    assert_eq!(events.take_health(), []);
}
