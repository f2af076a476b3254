//! `Operation`: the per-call series (first chunk, chunk gaps, token usage, GenAI duration),
//! exact values on paused time.

use std::time::Duration;

use evolution_metrics::names::gen_ai::{MAX_MODELS, OTHER};
use evolution_metrics::{Metrics, OperationName};
use metrics_util::debugging::Snapshotter;

use crate::support::{Value, capture, expect, histogram, recorder};

const BASE_URL: &str = "https://foundation-models.api.cloud.ru/v1";
const MODEL: &str = "GigaChat/GigaChat-2-Max";

/// The GenAI attributes of an operation on [`BASE_URL`], after `client=billing`.
fn attributes(operation: &str, response_model: Option<&str>) -> String {
    let response = response_model
        .map(|model| format!("gen_ai.response.model={model},"))
        .unwrap_or_default();
    format!(
        "client=billing,gen_ai.operation.name={operation},gen_ai.provider.name=cloud.ru,\
         gen_ai.request.model={MODEL},{response}server.address=foundation-models.api.cloud.ru,\
         server.port=443"
    )
}

fn series(name: &str, labels: &str) -> String {
    format!("{name}{{{labels}}}")
}

fn billing(gen_ai: bool) -> Metrics {
    Metrics::builder()
        .label("client", "billing")
        .gen_ai(gen_ai)
        .build()
        .unwrap()
}

async fn advance(ms: u64) {
    tokio::time::advance(Duration::from_millis(ms)).await;
}

/// A stream: first chunk after 250 ms, then gaps of 50 and 30 ms, usage 12/3, end 20 ms later.
async fn stream(metrics: &Metrics) {
    let mut operation = metrics.operation(OperationName::Chat, MODEL, &BASE_URL.parse().unwrap());
    advance(250).await;
    // The client sets the model a chunk names before counting the chunk.
    operation.response_model("GigaChat-2-Max-0613");
    operation.chunk();
    assert_eq!(
        operation.time_to_first_chunk(),
        Some(Duration::from_millis(250))
    );
    for gap in [50, 30] {
        advance(gap).await;
        operation.response_model("GigaChat-2-Max-0613");
        operation.chunk();
    }
    operation.usage(12, 3);
    advance(20).await;
    operation.finish(None);
}

fn values(snapshotter: &Snapshotter) -> crate::support::Recorded {
    capture(snapshotter).values
}

#[tokio::test(start_paused = true)]
async fn a_stream_records_first_chunk_chunk_gaps_usage_and_duration() {
    let (recorder, snapshotter) = recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let metrics = billing(true);
    stream(&metrics).await;

    let gen_ai = attributes("chat", Some("GigaChat-2-Max-0613"));
    let token = |kind: &str| {
        series(
            "gen_ai.client.token.usage",
            &format!("{gen_ai},gen_ai.token.type={kind}"),
        )
    };
    assert_eq!(
        values(&snapshotter),
        expect([
            (
                "evolution_time_to_first_chunk_seconds{client=billing}",
                histogram([0.25])
            ),
            (
                "evolution_time_per_output_chunk_seconds{client=billing}",
                histogram([0.05, 0.03])
            ),
            (
                "evolution_tokens_total{client=billing,type=input}",
                Value::Counter(12)
            ),
            (
                "evolution_tokens_total{client=billing,type=output}",
                Value::Counter(3)
            ),
            (
                &series("gen_ai.client.operation.time_to_first_chunk", &gen_ai),
                histogram([0.25])
            ),
            (
                &series("gen_ai.client.operation.time_per_output_chunk", &gen_ai),
                histogram([0.05, 0.03])
            ),
            (&token("input"), histogram([12.0])),
            (&token("output"), histogram([3.0])),
            (
                &series("gen_ai.client.operation.duration", &gen_ai),
                histogram([0.35])
            ),
        ])
    );
    let stats = metrics.stats();
    assert_eq!((stats.input_tokens, stats.output_tokens), (12, 3));
}

#[tokio::test(start_paused = true)]
async fn failures_carry_error_type_and_embeddings_count_input_tokens_only() {
    let (recorder, snapshotter) = recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let metrics = billing(true);
    let base_url = BASE_URL.parse().unwrap();

    let rejected = metrics.operation(OperationName::Chat, MODEL, &base_url);
    advance(40).await;
    rejected.finish(Some("429"));

    let mut embeddings = metrics.operation(OperationName::Embeddings, MODEL, &base_url);
    advance(80).await;
    embeddings.usage(7, 0);
    embeddings.finish(None);

    let chat = attributes("chat", None);
    let embed = attributes("embeddings", None);
    assert_eq!(
        values(&snapshotter),
        expect([
            (
                "evolution_tokens_total{client=billing,type=input}",
                Value::Counter(7)
            ),
            (
                &series(
                    "gen_ai.client.operation.duration",
                    &format!("{chat},error.type=429")
                ),
                histogram([0.04])
            ),
            (
                &series("gen_ai.client.operation.duration", &embed),
                histogram([0.08])
            ),
            (
                &series(
                    "gen_ai.client.token.usage",
                    &format!("{embed},gen_ai.token.type=input")
                ),
                histogram([7.0])
            ),
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn an_operation_dropped_unfinished_is_cancelled() {
    let (recorder, snapshotter) = recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let metrics = billing(true);
    let mut operation = metrics.operation(OperationName::Chat, MODEL, &BASE_URL.parse().unwrap());
    advance(100).await;
    operation.chunk();
    operation.usage(5, 1);
    advance(400).await;
    drop(operation);

    let chat = attributes("chat", None);
    let recorded = values(&snapshotter);
    assert_eq!(
        recorded.get(&series(
            "gen_ai.client.operation.duration",
            &format!("{chat},error.type=cancelled")
        )),
        Some(&histogram([0.5]))
    );
    // Tokens the answer reported were spent, cancelled or not.
    assert_eq!(
        recorded.get(&series(
            "gen_ai.client.token.usage",
            &format!("{chat},gen_ai.token.type=output")
        )),
        Some(&histogram([1.0]))
    );
    // One chunk: a first chunk, no gap.
    assert_eq!(
        recorded.get(&series(
            "gen_ai.client.operation.time_to_first_chunk",
            &chat
        )),
        Some(&histogram([0.1]))
    );
    assert!(
        !recorded
            .keys()
            .any(|key| key.contains("time_per_output_chunk"))
    );
}

#[tokio::test(start_paused = true)]
async fn switched_off_there_is_no_gen_ai_series_and_the_rest_is_the_same() {
    let (recorder, snapshotter) = recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let metrics = billing(false);
    assert!(!metrics.has_gen_ai() && Metrics::new().has_gen_ai());
    stream(&metrics).await;
    drop(metrics.operation(OperationName::Chat, MODEL, &BASE_URL.parse().unwrap()));

    assert_eq!(
        values(&snapshotter),
        expect([
            (
                "evolution_time_to_first_chunk_seconds{client=billing}",
                histogram([0.25])
            ),
            (
                "evolution_time_per_output_chunk_seconds{client=billing}",
                histogram([0.05, 0.03])
            ),
            (
                "evolution_tokens_total{client=billing,type=input}",
                Value::Counter(12)
            ),
            (
                "evolution_tokens_total{client=billing,type=output}",
                Value::Counter(3)
            ),
        ])
    );
    assert_eq!(metrics.stats().input_tokens, 12);
}

#[tokio::test(start_paused = true)]
async fn a_new_response_model_mid_stream_starts_new_chunk_series() {
    let (recorder, snapshotter) = recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let metrics = billing(true);
    let mut operation = metrics.operation(OperationName::Chat, MODEL, &BASE_URL.parse().unwrap());
    for (ms, model) in [(100, "a"), (10, "a"), (20, "a"), (30, "b")] {
        advance(ms).await;
        operation.response_model(model);
        operation.chunk();
    }
    operation.finish(None);

    let recorded = values(&snapshotter);
    let gaps = |model| {
        recorded
            .get(&series(
                "gen_ai.client.operation.time_per_output_chunk",
                &attributes("chat", Some(model)),
            ))
            .cloned()
    };
    assert_eq!(gaps("a"), Some(histogram([0.01, 0.02])));
    assert_eq!(gaps("b"), Some(histogram([0.03])));
    assert_eq!(
        recorded.get("evolution_time_per_output_chunk_seconds{client=billing}"),
        Some(&histogram([0.01, 0.02, 0.03]))
    );
}

#[tokio::test(start_paused = true)]
async fn model_names_are_bounded_per_handle() {
    let (recorder, snapshotter) = recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let metrics = Metrics::new();
    let base_url = "http://gateway.test:8080".parse().unwrap();
    // Request and response models share the bound: 32 calls name 64 models.
    for i in 0..MAX_MODELS / 2 {
        let mut operation =
            metrics.operation(OperationName::Chat, &format!("asked-{i}"), &base_url);
        operation.response_model(&format!("answered-{i}"));
        operation.finish(None);
    }
    let mut late = metrics.operation(OperationName::Chat, "one-too-many", &base_url);
    late.response_model("asked-0");
    late.finish(None);

    let recorded = values(&snapshotter);
    let duration = |request: &str, response: &str| {
        format!(
            "gen_ai.client.operation.duration{{gen_ai.operation.name=chat,\
             gen_ai.provider.name=cloud.ru,gen_ai.request.model={request},\
             gen_ai.response.model={response},server.address=gateway.test,server.port=8080}}"
        )
    };
    assert_eq!(recorded.len(), MAX_MODELS / 2 + 1);
    assert!(recorded.contains_key(&duration("asked-31", "answered-31")));
    // A new name past the bound is `_OTHER`; a name seen before keeps its value.
    assert!(recorded.contains_key(&duration(OTHER, "asked-0")));
    assert!(!recorded.keys().any(|key| key.contains("one-too-many")));
}
