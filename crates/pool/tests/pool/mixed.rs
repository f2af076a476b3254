//! Issue 19's "mixed keys" on scripted deployments: one key disabled at IAM, one answering
//! 429 with `Retry-After: 30`, one healthy; every call succeeds, and the cooldowns show in
//! how few calls the first two get.

use std::time::Duration;

use evolution_pool::{CooldownReason, DeploymentState, Strategy};

use crate::{Deployments, Events, Reply, served_by, status};

#[tokio::test(start_paused = true)]
async fn every_call_succeeds_and_the_bad_keys_get_a_few_attempts() {
    let deployments = Deployments::new(&["disabled", "limited", "healthy"]);
    deployments.get(0).answer(Reply::IamRejects);
    deployments.get(1).answer(Reply::RetryAfter("30"));
    for strategy in [Strategy::Ordered, Strategy::RoundRobin] {
        let pool = deployments
            .builder(&Events::default())
            .strategy(strategy)
            .build()
            .unwrap();
        let before = deployments.calls();
        // One call a second for two minutes.
        for _ in 0..120 {
            assert_eq!(served_by(&pool).await, "healthy", "{strategy}");
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        let calls: Vec<usize> = deployments
            .calls()
            .iter()
            .zip(before)
            .map(|(after, before)| after - before)
            .collect();
        // The disabled key once (its cooldown is 5 minutes); the limited one at 0, 30, 60
        // and 90 s.
        assert_eq!(calls, [1, 4, 120], "{strategy}");
        let disabled = status(&pool, "disabled");
        assert_eq!(
            (disabled.state, disabled.reason),
            (DeploymentState::Cooling, Some(CooldownReason::KeyRejected))
        );
        let limited = status(&pool, "limited");
        assert_eq!(
            (limited.state, limited.reason),
            (DeploymentState::Cooling, Some(CooldownReason::RateLimited))
        );
    }
}
