//! A 429 cools its deployment for its `Retry-After`, or a default, capped.

use std::time::Duration;

use evolution_pool::{
    CooldownReason, DEFAULT_MAX_RATE_LIMIT_COOLDOWN, DEFAULT_RATE_LIMIT_COOLDOWN, DeploymentState,
    HealthConfig, RequestOutcome,
};

use crate::{Deployments, Events, Reply, changed, count_finished, served_by, status};

/// A 429 answered with `reply` cools `main` for exactly `expected`: no call reaches it
/// before, one probe does at the end.
async fn cools_for(reply: Reply, health: HealthConfig, expected: Duration) {
    let deployments = Deployments::new(&["main", "spare"]);
    let events = Events::default();
    let pool = deployments.builder(&events).health(health).build().unwrap();
    deployments.get(0).answer(reply);

    assert_eq!(served_by(&pool).await, "spare");
    let recorded = events.take();
    assert_eq!(
        count_finished(&recorded, "main", RequestOutcome::RateLimited),
        1
    );
    assert!(recorded.contains(&changed(
        "main",
        DeploymentState::Healthy,
        DeploymentState::Cooling
    )));
    assert!(recorded.contains(&crate::Event::Cooldown(
        "main".into(),
        CooldownReason::RateLimited,
        expected
    )));
    let main = status(&pool, "main");
    assert_eq!(
        (main.state, main.reason, main.ready_in),
        (
            DeploymentState::Cooling,
            Some(CooldownReason::RateLimited),
            Some(expected)
        )
    );

    deployments.get(0).answer(Reply::Status(200));
    tokio::time::advance(expected - Duration::from_millis(1)).await;
    assert_eq!(served_by(&pool).await, "spare");
    assert_eq!(deployments.calls(), [1, 2]);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(served_by(&pool).await, "main", "the probe");
    assert_eq!(deployments.calls(), [2, 2]);
    assert_eq!(status(&pool, "main").state, DeploymentState::Healthy);
}

#[tokio::test(start_paused = true)]
async fn a_429_cools_for_its_retry_after() {
    cools_for(
        Reply::RetryAfter("30"),
        HealthConfig::default(),
        Duration::from_secs(30),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_429_without_retry_after_cools_for_the_default() {
    cools_for(
        Reply::Status(429),
        HealthConfig::default(),
        DEFAULT_RATE_LIMIT_COOLDOWN,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_429_with_an_unusable_retry_after_cools_for_the_configured_default() {
    cools_for(
        Reply::RetryAfter("soon"),
        HealthConfig::default()
            .rate_limit_cooldown(Duration::from_secs(7), Duration::from_secs(120)),
        Duration::from_secs(7),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_huge_retry_after_is_capped() {
    cools_for(
        Reply::RetryAfter("86400"),
        HealthConfig::default(),
        DEFAULT_MAX_RATE_LIMIT_COOLDOWN,
    )
    .await;
    cools_for(
        Reply::RetryAfter("99999999999999999999999"),
        HealthConfig::default()
            .rate_limit_cooldown(Duration::from_secs(5), Duration::from_secs(120)),
        Duration::from_secs(120),
    )
    .await;
}
