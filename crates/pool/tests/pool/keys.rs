//! A rejected key: the call fails over at once, the deployment cools for the key cooldown,
//! then exactly one call probes it.

use std::time::Duration;

use evolution_pool::{CooldownReason, DeploymentState, HealthConfig, Pool, RequestOutcome};
use evolution_token::TokenError;

use crate::{
    Deployments, Events, Reply, Stack, changed, concurrent, cooldown, count_finished, finished,
    served_by, status,
};

const KEY_COOLDOWN: Duration = Duration::from_secs(60);

fn pool(deployments: &Deployments, events: &Events) -> Pool<Stack> {
    deployments
        .builder(events)
        .health(HealthConfig::default().key_cooldown(KEY_COOLDOWN))
        .build()
        .unwrap()
}

/// `rejection` on the first deployment: it cools for the key cooldown, gets nothing during
/// it, then one probe; a probe that succeeds makes it healthy.
async fn cools_then_probes(rejection: Reply) {
    let deployments = Deployments::new(&["main", "spare"]);
    let events = Events::default();
    let pool = pool(&deployments, &events);
    deployments.get(0).answer(rejection);

    let start = tokio::time::Instant::now();
    assert_eq!(served_by(&pool).await, "spare");
    assert_eq!(start.elapsed(), Duration::ZERO, "failover is immediate");
    assert_eq!(deployments.calls(), [1, 1]);
    let recorded = events.take();
    assert_eq!(
        count_finished(&recorded, "main", RequestOutcome::KeyRejected),
        1
    );
    assert!(recorded.contains(&changed(
        "main",
        DeploymentState::Healthy,
        DeploymentState::Cooling
    )));
    assert!(recorded.contains(&cooldown("main", CooldownReason::KeyRejected, 60)));
    let main = status(&pool, "main");
    assert_eq!(main.state, DeploymentState::Cooling);
    assert_eq!(main.reason, Some(CooldownReason::KeyRejected));
    assert_eq!(main.ready_in, Some(KEY_COOLDOWN));

    // During the cooldown: not one call.
    tokio::time::advance(KEY_COOLDOWN - Duration::from_millis(1)).await;
    for _ in 0..10 {
        assert_eq!(served_by(&pool).await, "spare");
    }
    assert_eq!(deployments.calls(), [1, 11]);
    assert_eq!(
        status(&pool, "main").ready_in,
        Some(Duration::from_millis(1))
    );

    // Then one probe, however many callers: the key works again.
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(status(&pool, "main").ready_in, Some(Duration::ZERO));
    deployments.get(0).answer(Reply::Status(200));
    deployments.get(0).delay(Duration::from_secs(1));
    events.take();
    let results = concurrent(&pool, 16).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(
        deployments.calls(),
        [2, 26],
        "one probe, the rest fail over"
    );
    assert_eq!(
        events.take_health(),
        [changed(
            "main",
            DeploymentState::Cooling,
            DeploymentState::Healthy
        )]
    );
    assert_eq!(status(&pool, "main").state, DeploymentState::Healthy);
    deployments.get(0).delay(Duration::ZERO);
    assert_eq!(served_by(&pool).await, "main");
}

#[tokio::test(start_paused = true)]
async fn a_401_cools_the_key_then_one_call_probes_it() {
    cools_then_probes(Reply::Status(401)).await;
}

#[tokio::test(start_paused = true)]
async fn a_403_cools_the_key_then_one_call_probes_it() {
    cools_then_probes(Reply::Status(403)).await;
}

#[tokio::test(start_paused = true)]
async fn a_key_iam_refuses_cools_then_one_call_probes_it() {
    cools_then_probes(Reply::IamRejects).await;
}

#[tokio::test(start_paused = true)]
async fn a_probe_rejected_again_restarts_the_cooldown() {
    let deployments = Deployments::new(&["main", "spare"]);
    let events = Events::default();
    let pool = pool(&deployments, &events);
    deployments.get(0).answer(Reply::Status(401));
    assert_eq!(served_by(&pool).await, "spare");
    events.take();

    tokio::time::advance(KEY_COOLDOWN).await;
    assert_eq!(served_by(&pool).await, "spare");
    assert_eq!(deployments.calls(), [2, 2]);
    // Still cooling: a new cooldown, no change of state.
    assert_eq!(
        events.take_health(),
        [cooldown("main", CooldownReason::KeyRejected, 60)]
    );
    assert_eq!(status(&pool, "main").ready_in, Some(KEY_COOLDOWN));
    tokio::time::advance(KEY_COOLDOWN / 2).await;
    assert_eq!(served_by(&pool).await, "spare");
    assert_eq!(deployments.calls(), [2, 3]);
}

#[tokio::test(start_paused = true)]
async fn iam_down_is_handed_back_without_failover_or_cooldown() {
    let deployments = Deployments::new(&["main", "spare"]);
    let events = Events::default();
    let pool = pool(&deployments, &events);
    deployments.get(0).answer(Reply::IamDown);
    let error = crate::call(&pool).await.unwrap_err();
    assert!(matches!(
        error.downcast_ref::<TokenError>(),
        Some(TokenError::Unavailable { .. })
    ));
    assert_eq!(deployments.calls(), [1, 0]);
    assert_eq!(
        events.take(),
        [
            crate::Event::Sent("main".into(), 1),
            finished("main", RequestOutcome::Failed)
        ]
    );
    assert_eq!(status(&pool, "main").state, DeploymentState::Healthy);
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_rejections_cools_the_key_once() {
    let deployments = Deployments::new(&["main", "spare"]);
    deployments.get(0).answer(Reply::Status(401));
    deployments.get(0).delay(Duration::from_secs(1));
    let events = Events::default();
    let pool = pool(&deployments, &events);
    let results = concurrent(&pool, 64).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(deployments.calls(), [64, 64]);
    let recorded = events.take();
    assert_eq!(crate::peak_in_flight(&recorded, "main"), 64);
    let health: Vec<_> = recorded
        .into_iter()
        .filter(|e| matches!(e, crate::Event::Changed(..) | crate::Event::Cooldown(..)))
        .collect();
    assert_eq!(
        health,
        [
            changed("main", DeploymentState::Healthy, DeploymentState::Cooling),
            cooldown("main", CooldownReason::KeyRejected, 60)
        ]
    );
}
