//! Every deployment cooling: fail at once naming the soonest, or wait for it within the
//! call's deadline and the pool's `max`.

use std::time::Duration;

use evolution_pool::{AllCooling, CooldownReason, HealthConfig, Pool, Unavailable, Waiting};
use tokio::time::Instant;

use crate::{Deployments, Events, Reply, Stack, call, call_within, served_by};

/// `slow` cools for 30 s and `soon` for 10 s, both after a 429; `now` is 3 s later.
async fn both_cooling(all_cooling: AllCooling) -> (Deployments, Pool<Stack>) {
    let deployments = Deployments::new(&["slow", "soon"]);
    deployments.get(0).answer(Reply::RetryAfter("30"));
    deployments.get(1).answer(Reply::RetryAfter("10"));
    let pool = deployments
        .builder(&Events::default())
        .when_all_cooling(all_cooling)
        .build()
        .unwrap();
    // Both refuse: the last answer, `soon`'s 429, goes back up.
    let response = call(&pool).await.unwrap();
    assert_eq!(
        (response.status().as_u16(), response.body().as_str()),
        (429, "soon")
    );
    assert_eq!(deployments.calls(), [1, 1]);
    deployments.answer_all(Reply::Status(200));
    tokio::time::advance(Duration::from_secs(3)).await;
    (deployments, pool)
}

fn unavailable(error: &evolution_token::BoxError) -> &Unavailable {
    error
        .downcast_ref::<Unavailable>()
        .unwrap_or_else(|| panic!("not Unavailable: {error}"))
}

#[tokio::test(start_paused = true)]
async fn fail_names_the_soonest_at_once() {
    let (deployments, pool) = both_cooling(AllCooling::Fail).await;
    let start = Instant::now();
    let error = call(&pool).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    let unavailable = unavailable(&error);
    assert_eq!(
        *unavailable,
        Unavailable {
            soonest: "soon".into(),
            ready_in: Duration::from_secs(7),
            why: Waiting::Cooldown(CooldownReason::RateLimited),
        }
    );
    assert_eq!(unavailable.retry_after(), Duration::from_secs(7));
    assert_eq!(
        error.to_string(),
        "no deployment can take the call: every one is cooling down or at its rate limit; the soonest, `soon`, is ready in 7.0 s (it answered 429 Too Many Requests)"
    );
    assert_eq!(deployments.calls(), [1, 1]);
}

#[tokio::test(start_paused = true)]
async fn fail_says_why_the_soonest_is_out() {
    let deployments = Deployments::new(&["key", "circuit"]);
    deployments.get(0).answer(Reply::Status(403));
    deployments.get(1).answer(Reply::Status(500));
    let pool = deployments
        .builder(&Events::default())
        .health(
            HealthConfig::default()
                .key_cooldown(Duration::from_secs(60))
                .breaker(1, Duration::from_secs(10), Duration::from_secs(20)),
        )
        .when_all_cooling(AllCooling::Fail)
        .build()
        .unwrap();
    call(&pool).await.unwrap();
    let error = call(&pool).await.unwrap_err();
    assert_eq!(
        *unavailable(&error),
        Unavailable {
            soonest: "circuit".into(),
            ready_in: Duration::from_secs(20),
            why: Waiting::Cooldown(CooldownReason::CircuitOpen),
        }
    );
    tokio::time::advance(Duration::from_secs(30)).await;
    // `circuit` was probed and failed again (open 20 s more); `key` is ready in 30 s.
    call(&pool).await.unwrap();
    tokio::time::advance(Duration::from_secs(21)).await;
    deployments.get(1).answer(Reply::Status(200));
    assert_eq!(served_by(&pool).await, "circuit");
    deployments.get(1).answer(Reply::Status(500));
    call(&pool).await.unwrap();
    let error = call(&pool).await.unwrap_err();
    assert_eq!(
        *unavailable(&error),
        Unavailable {
            soonest: "key".into(),
            ready_in: Duration::from_secs(9),
            why: Waiting::Cooldown(CooldownReason::KeyRejected),
        }
    );
}

#[tokio::test(start_paused = true)]
async fn wait_waits_for_the_soonest_and_succeeds() {
    let (deployments, pool) = both_cooling(AllCooling::Wait {
        max: Duration::from_secs(60),
    })
    .await;
    let start = Instant::now();
    assert_eq!(served_by(&pool).await, "soon");
    assert_eq!(start.elapsed(), Duration::from_secs(7));
    assert_eq!(deployments.calls(), [1, 2]);
}

#[tokio::test(start_paused = true)]
async fn wait_within_the_deadline_succeeds() {
    let (deployments, pool) = both_cooling(AllCooling::default()).await;
    let start = Instant::now();
    let response = call_within(&pool, Duration::from_secs(8)).await.unwrap();
    assert_eq!(response.body(), "soon");
    assert_eq!(start.elapsed(), Duration::from_secs(7));
    assert_eq!(deployments.calls(), [1, 2]);
}

#[tokio::test(start_paused = true)]
async fn wait_fails_at_once_when_the_soonest_is_after_the_deadline() {
    let (deployments, pool) = both_cooling(AllCooling::default()).await;
    let start = Instant::now();
    let error = call_within(&pool, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO, "no wait");
    assert_eq!(unavailable(&error).soonest.as_ref(), "soon");
    assert_eq!(unavailable(&error).ready_in, Duration::from_secs(7));
    assert_eq!(deployments.calls(), [1, 1]);
}

#[tokio::test(start_paused = true)]
async fn wait_fails_at_once_when_the_soonest_is_after_max() {
    let (deployments, pool) = both_cooling(AllCooling::Wait {
        max: Duration::from_secs(6),
    })
    .await;
    let start = Instant::now();
    let error = call_within(&pool, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO, "no wait");
    assert_eq!(unavailable(&error).soonest.as_ref(), "soon");
    let error = call(&pool).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO, "no wait");
    assert_eq!(unavailable(&error).ready_in, Duration::from_secs(7));
    assert_eq!(deployments.calls(), [1, 1]);
}

/// `max` bounds a call's whole wait: a call that finds every deployment cooling again after
/// waiting (another caller took the slot) waits no longer than `max` in total.
#[tokio::test(start_paused = true)]
async fn max_bounds_the_whole_wait_not_each_wait() {
    use std::num::NonZeroU32;

    use evolution_pool::RateLimits;

    let deployments = Deployments::new(&["only"]);
    let members: Vec<_> = deployments
        .members()
        .into_iter()
        // One request a minute.
        .map(|member| member.limits(RateLimits::new(NonZeroU32::new(1), None)))
        .collect();
    let pool = Pool::builder(members)
        .when_all_cooling(AllCooling::Wait {
            max: Duration::from_secs(90),
        })
        .build()
        .unwrap();
    let started = Instant::now();
    let calls: Vec<_> = (0..3).map(|_| tokio::spawn(call(&pool))).collect();
    let mut ended = Vec::new();
    for call in calls {
        let outcome = call.await.unwrap();
        ended.push((outcome.is_ok(), started.elapsed().as_secs()));
    }
    ended.sort();
    // One at once, one after the minute's refill; the third would need 120 s: past its
    // 90 s, it fails when it finds the slot taken again, not two minutes later.
    assert_eq!(ended, [(false, 60), (true, 0), (true, 60)], "{ended:?}");
}

/// A cooldown of `Duration::MAX` is "for good", not an overflow.
#[tokio::test(start_paused = true)]
async fn an_endless_cooldown_does_not_overflow() {
    let deployments = Deployments::new(&["main", "spare"]);
    deployments.get(0).answer(Reply::Status(401));
    let pool = deployments
        .builder(&Events::default())
        .health(HealthConfig::default().key_cooldown(Duration::MAX))
        .when_all_cooling(AllCooling::Wait { max: Duration::MAX })
        .build()
        .unwrap();
    assert_eq!(served_by(&pool).await, "spare");
    tokio::time::advance(Duration::from_secs(86_400 * 365)).await;
    assert_eq!(served_by(&pool).await, "spare");
    assert_eq!(deployments.calls(), [1, 2]);
}
