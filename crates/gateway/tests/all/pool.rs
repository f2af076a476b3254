//! The gateway serving from a pool of deployments: a bad key never turns into errors, and
//! `/readyz` lists the deployments.

use evolution_client::pool::{AllCooling, Strategy};
use evolution_client::{Deployment, EvolutionInference, EvolutionInferenceBuilder};
use evolution_emulator::{DEMO_MODEL, Emulator, Fault};

use crate::support::{Answer, Served, chat_body, config, fast_retry, http};

async fn two_keys() -> Emulator {
    Emulator::builder()
        .key("revoked", "s1")
        .key("good", "s2")
        .disable_key("revoked")
        .start()
        .await
        .unwrap()
}

fn pooled(emu: &Emulator) -> EvolutionInference {
    pooled_builder(emu).build().unwrap()
}

fn pooled_builder(emu: &Emulator) -> EvolutionInferenceBuilder {
    EvolutionInference::builder()
        .when_all_cooling(AllCooling::Fail)
        .model(DEMO_MODEL)
        .base_url(emu.base_url())
        .auth_url(emu.auth_url())
        .retry(fast_retry())
        .strategy(Strategy::RoundRobin)
        .deployment(Deployment::new("revoked", "revoked", "s1"))
        .deployment(Deployment::new("good", "good", "s2"))
}

#[tokio::test]
async fn a_revoked_key_in_the_pool_never_reaches_the_clients() {
    let emu = two_keys().await;
    let gateway = Served::with(pooled(&emu), config()).await;
    for i in 0..10 {
        let answer = Answer::of(
            http()
                .post(gateway.at("/v1/chat/completions"))
                .json(&chat_body(&format!("q{i}")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(
            answer.json()["choices"][0]["message"]["content"],
            format!("[good] echo: q{i}")
        );
    }
    let stats = emu.stats();
    assert_eq!(
        stats.iam_requests_for("revoked"),
        1,
        "cooled after one refusal"
    );
    assert_eq!(stats.chat_requests_for("good"), 10);

    let ready = Answer::of(http().get(gateway.at("/readyz")).send().await.unwrap()).await;
    assert_eq!(ready.status, 200, "{ready:?}");
    let ready = ready.json();
    assert_eq!(ready["deployment"], "good");
    assert_eq!(ready["deployments"][0]["name"], "revoked");
    assert_eq!(ready["deployments"][0]["state"], "cooling");
    assert_eq!(ready["deployments"][0]["reason"], "key_rejected");
    assert_eq!(ready["deployments"][1]["state"], "healthy");
}

#[tokio::test]
async fn a_pool_that_cannot_serve_is_not_ready_and_answers_503_with_retry_after() {
    let emu = two_keys().await;
    emu.set_key_fault("good", Fault::status(429).with_header("retry-after", "30"));
    // No retries: the retry layer would wait out the 429's Retry-After before the pool's
    // answer.
    let client = pooled_builder(&emu).no_retry().build().unwrap();
    let gateway = Served::with(client, config()).await;
    let answer = Answer::of(
        http()
            .post(gateway.at("/v1/chat/completions"))
            .json(&chat_body("q"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    // The revoked key fails over to the limited one, whose 429 goes back to the client.
    assert_eq!(answer.status, 429, "{answer:?}");
    // Now both cool (5 minutes and 30 s): the pool fails at once, 503 until the soonest.
    let answer = Answer::of(
        http()
            .post(gateway.at("/v1/chat/completions"))
            .json(&chat_body("q"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 503, "{answer:?}");
    let wait: u64 = answer.header("retry-after").unwrap().parse().unwrap();
    assert!((29..=30).contains(&wait), "retry-after {wait}");
    let ready = Answer::of(http().get(gateway.at("/readyz")).send().await.unwrap()).await;
    assert_eq!(ready.status, 503, "{ready:?}");
}

/// A cooled-down deployment with no call to probe it counts as ready: a replica taken out
/// of the balancer while every key cooled would otherwise never get the call that heals it.
#[tokio::test(start_paused = true)]
async fn readiness_returns_when_the_cooldowns_end_without_a_call() {
    let emu = two_keys().await;
    emu.set_key_fault("good", Fault::status(429).with_header("retry-after", "2"));
    let client = pooled_builder(&emu).no_retry().build().unwrap();
    // One call cools both (the revoked key for 5 minutes, the limited one for 2 s).
    let _ = client.invoke("q").await;
    let gateway = Served::with(client, config()).await;
    let ready = Answer::of(http().get(gateway.at("/readyz")).send().await.unwrap()).await;
    assert_eq!(ready.status, 503, "{ready:?}");
    emu.clear_key_fault("good");
    tokio::time::advance(std::time::Duration::from_secs(2)).await;
    // A new connection: the paused clock's jump may have timed out the idle one.
    let fresh = reqwest::Client::new();
    let ready = Answer::of(fresh.get(gateway.at("/readyz")).send().await.unwrap()).await;
    assert_eq!(ready.status, 200, "{ready:?}");
    assert_eq!(ready.json()["deployment"], "good");
}
