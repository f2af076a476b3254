//! A scrape of the Prometheus recorder after the scenario: names, `# TYPE` lines, values.

use evolution_metrics::{Metrics, names};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::scenario::scenario;
use crate::support::FAKE_TOKEN;

#[tokio::test(start_paused = true)]
async fn the_scrape_has_every_name_with_its_type_and_no_token() {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in names::histogram_buckets() {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
            .unwrap();
    }
    let recorder = builder.build_recorder();
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
