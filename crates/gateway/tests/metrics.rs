//! `GET /metrics`: the gateway's own series beside the client stack's, from a Prometheus
//! recorder installed in the process. A binary of its own: the recorder is global, and one
//! test owns every count in it.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use evolution_emulator::Route;
use evolution_gateway::{Gateway, GatewayConfig, telemetry};
use evolution_testkit::emulator;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use serde_json::json;

use support::upstream::{Ended, FIRST};
use support::{
    Answer, GATEWAY_KEY, LIMIT, MODEL, Served, Upstream, chat_body, client_builder, client_for,
    http, keyed_config,
};

/// The value of the one sample of `name` whose labels include every one of `labels`
/// (`key="value"`), if there is one.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            let Some(rest) = line.strip_prefix(name) else {
                return false;
            };
            let (label_set, _) = match rest.strip_prefix('{') {
                Some(rest) => rest.split_once('}').unwrap_or(("", "")),
                None if rest.starts_with(' ') => ("", rest),
                None => return false,
            };
            let present: Vec<&str> = label_set.split(',').collect();
            labels.iter().all(|label| present.contains(label))
        });
    let line = found.next()?;
    assert!(
        found.next().is_none(),
        "more than one {name} {labels:?}:\n{text}"
    );
    line.rsplit(' ').next()?.parse().ok()
}

async fn scrape(gateway: &Served) -> String {
    let answer = Answer::of(http().get(gateway.at("/metrics")).send().await.unwrap()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    answer.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_gateways_requests_and_the_client_stacks_calls() {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(telemetry::REQUEST_DURATION_SECONDS.to_owned()),
            telemetry::REQUEST_DURATION_BUCKETS,
        )
        .unwrap()
        .install_recorder()
        .expect("the only recorder of this binary");
    let emu = emulator().await;
    let gateway = Gateway::new(client_builder(&emu).build().unwrap(), keyed_config())
        .unwrap()
        .with_prometheus(handle.clone());
    let gateway = Served::start(gateway).await;
    let chat = |body: serde_json::Value, key: Option<&str>| {
        let mut request = http().post(gateway.at("/v1/chat/completions")).json(&body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };

    for _ in 0..3 {
        let ok = chat(chat_body("hi"), Some(GATEWAY_KEY)).await.unwrap();
        assert_eq!(ok.status(), 200);
        ok.bytes().await.unwrap();
    }
    assert_eq!(
        chat(json!([1]), Some(GATEWAY_KEY)).await.unwrap().status(),
        400
    );
    assert_eq!(chat(chat_body("hi"), None).await.unwrap().status(), 401);
    let nowhere = http().get(gateway.at("/wp-admin")).send().await.unwrap();
    assert_eq!(nowhere.status(), 404);

    let text = scrape(&gateway).await;
    let requests = |route: &str, status: &str| requests_of(&text, route, status);
    assert_eq!(requests("chat_completions", "200"), Some(3.0), "{text}");
    assert_eq!(requests("chat_completions", "400"), Some(1.0), "{text}");
    assert_eq!(requests("chat_completions", "401"), Some(1.0), "{text}");
    assert_eq!(requests("other", "404"), Some(1.0), "{text}");
    assert_eq!(
        sample(
            &text,
            "evolution_gateway_request_duration_seconds_count",
            &["route=\"chat_completions\""]
        ),
        Some(5.0),
        "{text}"
    );
    assert!(
        text.contains("evolution_gateway_request_duration_seconds_bucket{route=\"chat_completions\",le=\"0.001\"}"),
        "the buckets are the gateway's: {text}"
    );
    assert!(
        text.contains("# HELP evolution_gateway_requests_total"),
        "{text}"
    );
    // The client stack's series: three calls went upstream.
    assert_eq!(
        sample(&text, "evolution_requests_total", &["status=\"200\""]),
        Some(3.0),
        "{text}"
    );

    // A stream whose client goes away: counted, and out of the in-flight gauge.
    let upstream = Upstream::start().await;
    let streaming = Gateway::new(
        client_for(&emu, &upstream.base_url()),
        GatewayConfig {
            default_model: Some(MODEL.to_owned()),
            ..GatewayConfig::default()
        },
    )
    .unwrap()
    .with_prometheus(handle.clone());
    let streaming = Served::start(streaming).await;
    let mut held = http()
        .post(streaming.at("/v1/chat/completions"))
        .json(&json!({"stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    let first = tokio::time::timeout(LIMIT, held.chunk())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.as_deref(), Some(FIRST.as_bytes()));
    let in_flight = |text: &str| sample(text, telemetry::REQUESTS_IN_FLIGHT, &[]);
    assert_eq!(in_flight(&handle.render()), Some(1.0));

    drop(held);
    assert_eq!(
        upstream.next_ended(Duration::from_secs(5)).await,
        Some(Ended::Dropped)
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while in_flight(&handle.render()) != Some(0.0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still in flight: {}",
            handle.render()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let text = handle.render();
    assert_eq!(
        requests_of(&text, "chat_completions", "200"),
        Some(4.0),
        "the stream, counted when it was dropped: {text}"
    );

    // A client that gives up before the answer's head: counted with status "none".
    let slow = emulator().await;
    slow.set_latency(Route::Chat, Duration::from_secs(3));
    let waiting = Gateway::new(
        client_builder(&slow).build().unwrap(),
        GatewayConfig::default(),
    )
    .unwrap()
    .with_prometheus(handle.clone());
    let waiting = Served::start(waiting).await;
    let gave_up = http()
        .post(waiting.at("/v1/chat/completions"))
        .timeout(Duration::from_millis(200))
        .json(&chat_body("hi"))
        .send()
        .await;
    assert!(gave_up.is_err_and(|error| error.is_timeout()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let text = handle.render();
        if requests_of(&text, "chat_completions", "none") == Some(1.0)
            && in_flight(&text) == Some(0.0)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not counted as gone: {text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `evolution_gateway_requests_total{route, status}`.
fn requests_of(text: &str, route: &str, status: &str) -> Option<f64> {
    sample(
        text,
        telemetry::REQUESTS_TOTAL,
        &[
            &format!("route=\"{route}\""),
            &format!("status=\"{status}\""),
        ],
    )
}
