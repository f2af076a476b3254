//! Token usage and time to first chunk through the gateway: the gateway asks upstream for a
//! stream's usage whether or not its client did, counts it, and forwards the usage chunk
//! only to a client that asked. A binary of its own: the Prometheus recorder is global.

// Shared with the other test binaries, which use the parts this one does not.
#[path = "support/mod.rs"]
#[allow(unused_imports)]
mod support;

use evolution_gateway::{Gateway, telemetry};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use serde_json::{Value, json};

use support::{Answer, MODEL, Served, client_builder, config, http};

/// The value of the one sample named exactly `name` with every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| {
            line.strip_prefix(name).is_some_and(|rest| {
                (rest.starts_with('{') || rest.starts_with(' '))
                    && labels.iter().all(|label| rest.contains(label))
            })
        })
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

/// The `data:` payloads of a streamed answer.
fn events(body: &str) -> Vec<&str> {
    body.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_get_what_they_asked_for_and_every_token_is_counted() {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in telemetry::histogram_buckets() {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
            .unwrap();
    }
    let handle = builder.install_recorder().expect("the only recorder");
    let emu = evolution_testkit::emulator_builder()
        .model(MODEL)
        .embedding_model("embedder")
        .start()
        .await
        .unwrap();
    let gateway = Gateway::new(client_builder(&emu).build().unwrap(), config())
        .unwrap()
        .with_prometheus(handle.clone());
    let gateway = Served::start(gateway).await;
    let post = |path: &'static str, body: Value| {
        let request = http().post(gateway.at(path)).json(&body);
        async move { Answer::of(request.send().await.unwrap()).await }
    };
    let messages = json!([{"role": "user", "content": "count my words"}]);

    let plain = post("/v1/chat/completions", json!({"messages": messages})).await;
    assert_eq!(plain.status, 200, "{plain:?}");
    assert!(plain.json()["usage"]["prompt_tokens"].as_u64() > Some(0));

    // Not asked for: no usage chunk reaches the client, although the gateway asked upstream.
    let quiet = post(
        "/v1/chat/completions",
        json!({"messages": messages, "stream": true}),
    )
    .await;
    assert_eq!(quiet.status, 200);
    let quiet_events = events(&quiet.body);
    assert_eq!(quiet_events.last(), Some(&"[DONE]"));
    assert!(
        quiet_events
            .iter()
            .all(|event| !event.contains("\"usage\"")),
        "{quiet_events:?}"
    );

    // Asked for: the usage chunk is there, once.
    let asked = post(
        "/v1/chat/completions",
        json!({"messages": messages, "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    let with_usage = events(&asked.body)
        .into_iter()
        .filter(|event| event.contains("\"usage\""))
        .count();
    assert_eq!(with_usage, 1, "{}", asked.body);

    let embedded = post(
        "/v1/embeddings",
        json!({"model": "embedder", "input": ["a b", "c"]}),
    )
    .await;
    assert_eq!(embedded.status, 200, "{embedded:?}");

    let reported = emu.stats();
    assert!(reported.reported_output_tokens > 0);
    let text = handle.render();
    assert_eq!(
        sample(&text, "evolution_tokens_total", &["type=\"input\""]),
        Some(reported.reported_input_tokens as f64),
        "{text}"
    );
    assert_eq!(
        sample(&text, "evolution_tokens_total", &["type=\"output\""]),
        Some(reported.reported_output_tokens as f64),
        "{text}"
    );
    // Time to first chunk, per route: the two streams.
    assert_eq!(
        sample(
            &text,
            "evolution_gateway_time_to_first_chunk_seconds_count",
            &["route=\"chat_completions\""]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "evolution_time_to_first_chunk_seconds_count", &[]),
        Some(2.0),
        "the client stack's, of the same two streams: {text}"
    );

    // The OpenTelemetry GenAI series, beside the evolution_* ones.
    let chat = [
        "gen_ai_operation_name=\"chat\"",
        "gen_ai_provider_name=\"cloud.ru\"",
        "gen_ai_request_model=\"demo-model\"",
        "gen_ai_response_model=\"demo-model\"",
        "server_address=\"127.0.0.1\"",
    ];
    assert_eq!(
        sample(&text, "gen_ai_client_operation_duration_count", &chat),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "gen_ai_client_operation_duration_count",
            &[
                "gen_ai_operation_name=\"embeddings\"",
                "gen_ai_request_model=\"embedder\""
            ]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "gen_ai_client_operation_time_to_first_chunk_count",
            &chat
        ),
        Some(2.0),
        "{text}"
    );
    let input: f64 = ["chat", "embeddings"]
        .iter()
        .filter_map(|operation| {
            sample(
                &text,
                "gen_ai_client_token_usage_sum",
                &[
                    &format!("gen_ai_operation_name=\"{operation}\""),
                    "gen_ai_token_type=\"input\"",
                ],
            )
        })
        .sum();
    assert_eq!(input, reported.reported_input_tokens as f64, "{text}");
    assert_eq!(
        sample(
            &text,
            "gen_ai_client_token_usage_sum",
            &["gen_ai_token_type=\"output\""]
        ),
        Some(reported.reported_output_tokens as f64),
        "{text}"
    );
}
