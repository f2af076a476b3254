//! A scrape of the Prometheus recorder after the scenario: names, `# TYPE` lines, values.

use std::time::Duration;

use evolution_metrics::{Metrics, OperationName, names};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

use crate::scenario::scenario;
use crate::support::FAKE_TOKEN;

/// The Prometheus recorder with the suggested buckets of every histogram.
fn prometheus(builder: PrometheusBuilder) -> PrometheusRecorder {
    let mut builder = builder;
    for (name, buckets) in names::histogram_buckets() {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
            .unwrap();
    }
    builder.build_recorder()
}

#[tokio::test(start_paused = true)]
async fn the_scrape_has_every_name_with_its_type_and_no_token() {
    let recorder = prometheus(PrometheusBuilder::new());
    let handle = recorder.handle();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let metrics = Metrics::builder()
        .label("client", "billing")
        .build()
        .unwrap();
    scenario(&metrics).await;

    let scrape = handle.render();
    for (name, kind) in [
        (names::REQUESTS_TOTAL, "counter"),
        (names::REQUEST_DURATION_SECONDS, "histogram"),
        (names::REQUEST_ATTEMPTS, "histogram"),
        (names::RETRIES_TOTAL, "counter"),
        (names::TOKEN_REFRESHES_TOTAL, "counter"),
        (names::TOKEN_REFRESH_DURATION_SECONDS, "histogram"),
        (names::TOKEN_EXPIRES_IN_SECONDS, "gauge"),
        (names::FALLBACK_ACTIVE, "gauge"),
        (names::FALLBACK_SWITCHES_TOTAL, "counter"),
        (names::AUTH_ERRORS_TOTAL, "counter"),
    ] {
        let type_line = format!("# TYPE {name} {kind}\n");
        assert!(scrape.contains(&type_line), "no {type_line:?} in\n{scrape}");
        assert!(
            scrape.contains(&format!("# HELP {name} ")),
            "no help for {name}"
        );
    }
    for line in [
        r#"evolution_requests_total{client="billing",outcome="ok",status="200"} 6"#,
        r#"evolution_requests_total{client="billing",outcome="transport_error",status="none"} 1"#,
        r#"evolution_request_duration_seconds_bucket{client="billing",le="0.25"} 7"#,
        r#"evolution_request_duration_seconds_count{client="billing"} 8"#,
        r#"evolution_request_attempts_bucket{client="billing",le="1"} 7"#,
        r#"evolution_retries_total{client="billing",reason="503"} 1"#,
        r#"evolution_fallback_active{client="billing"} 1"#,
        r#"evolution_fallback_switches_total{client="billing",reason="auth_error"} 1"#,
        r#"evolution_auth_errors_total{client="billing"} 1"#,
        r#"evolution_token_refreshes_total{client="billing",result="success",trigger="first_use"} 2"#,
        r#"evolution_token_expires_in_seconds{client="billing"} 3600"#,
    ] {
        assert!(
            scrape.lines().any(|l| l == line),
            "no {line:?} in\n{scrape}"
        );
    }
    assert!(!scrape.contains(FAKE_TOKEN) && !scrape.contains("Bearer"));
    assert!(!scrape.contains("key_id"));
}

/// A streamed chat: first chunk after 300 ms, a second 50 ms later, usage 20/2, end 50 ms
/// later.
async fn streamed_chat(metrics: &Metrics) {
    let base_url = "https://foundation-models.api.cloud.ru/v1".parse().unwrap();
    let mut operation = metrics.operation(OperationName::Chat, "GigaChat-2-Max", &base_url);
    for ms in [300, 50] {
        tokio::time::advance(Duration::from_millis(ms)).await;
        operation.response_model("GigaChat-2-Max");
        operation.chunk();
    }
    operation.usage(20, 2);
    tokio::time::advance(Duration::from_millis(50)).await;
    operation.finish(None);
}

#[tokio::test(start_paused = true)]
async fn the_gen_ai_series_are_in_the_scrape_with_underscored_names_and_their_buckets() {
    let recorder = prometheus(PrometheusBuilder::new());
    let handle = recorder.handle();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let metrics = Metrics::builder()
        .label("client", "billing")
        .build()
        .unwrap();
    streamed_chat(&metrics).await;

    let scrape = handle.render();
    let attributes = r#"client="billing",gen_ai_operation_name="chat",gen_ai_provider_name="cloud.ru",gen_ai_request_model="GigaChat-2-Max",gen_ai_response_model="GigaChat-2-Max",server_address="foundation-models.api.cloud.ru",server_port="443""#;
    for name in [
        "gen_ai_client_operation_duration",
        "gen_ai_client_token_usage",
        "gen_ai_client_operation_time_to_first_chunk",
        "gen_ai_client_operation_time_per_output_chunk",
        "evolution_time_per_output_chunk_seconds",
    ] {
        let type_line = format!("# TYPE {name} histogram\n");
        assert!(scrape.contains(&type_line), "no {type_line:?} in\n{scrape}");
        assert!(
            scrape.contains(&format!("# HELP {name} ")),
            "no help for {name}"
        );
    }
    for line in [
        // 0.4 s: in the advised bucket up to 0.64 s, not in the one up to 0.32 s.
        format!(r#"gen_ai_client_operation_duration_bucket{{{attributes},le="0.32"}} 0"#),
        format!(r#"gen_ai_client_operation_duration_bucket{{{attributes},le="0.64"}} 1"#),
        format!(r#"gen_ai_client_operation_duration_sum{{{attributes}}} 0.4"#),
        format!(
            r#"gen_ai_client_token_usage_bucket{{{attributes},gen_ai_token_type="input",le="64"}} 1"#
        ),
        format!(
            r#"gen_ai_client_token_usage_bucket{{{attributes},gen_ai_token_type="output",le="1"}} 0"#
        ),
        format!(
            r#"gen_ai_client_token_usage_bucket{{{attributes},gen_ai_token_type="output",le="4"}} 1"#
        ),
        format!(r#"gen_ai_client_token_usage_sum{{{attributes},gen_ai_token_type="input"}} 20"#),
        format!(
            r#"gen_ai_client_operation_time_to_first_chunk_bucket{{{attributes},le="0.32"}} 1"#
        ),
        format!(r#"gen_ai_client_operation_time_to_first_chunk_sum{{{attributes}}} 0.3"#),
        format!(
            r#"gen_ai_client_operation_time_per_output_chunk_bucket{{{attributes},le="0.08"}} 1"#
        ),
        format!(r#"gen_ai_client_operation_time_per_output_chunk_count{{{attributes}}} 1"#),
        r#"evolution_time_per_output_chunk_seconds_bucket{client="billing",le="0.05"} 1"#
            .to_owned(),
        r#"evolution_time_to_first_chunk_seconds_count{client="billing"} 1"#.to_owned(),
        r#"evolution_tokens_total{client="billing",type="input"} 20"#.to_owned(),
    ] {
        assert!(
            scrape.lines().any(|l| l == line),
            "no {line:?} in\n{scrape}"
        );
    }
}

/// With the exporter's recommended naming, the unit joins the names of the GenAI duration
/// histograms (the `evolution_*` ones end with it already).
#[tokio::test(start_paused = true)]
async fn recommended_naming_adds_the_seconds_suffix_to_gen_ai_durations() {
    let recorder = prometheus(PrometheusBuilder::new().with_recommended_naming(true));
    let handle = recorder.handle();
    let _guard = metrics::set_default_local_recorder(&recorder);
    Metrics::describe();
    streamed_chat(&Metrics::new()).await;

    let scrape = handle.render();
    for type_line in [
        "# TYPE gen_ai_client_operation_duration_seconds histogram",
        "# TYPE gen_ai_client_operation_time_to_first_chunk_seconds histogram",
        "# TYPE gen_ai_client_operation_time_per_output_chunk_seconds histogram",
        "# TYPE gen_ai_client_token_usage histogram",
        "# TYPE evolution_time_to_first_chunk_seconds histogram",
    ] {
        assert!(
            scrape.lines().any(|l| l == type_line),
            "no {type_line:?} in\n{scrape}"
        );
    }
}
