//! A scripted scenario in the shape of the (3 OK, one 503 retried, one revoked
//! token, one fallback switch, one refresh at a short TTL, plus failures): every series
//! exactly, `Stats` agreeing with the recorder, and no token anywhere.

use std::sync::Arc;
use std::time::Duration;

use evolution_metrics::{FallbackSide, Metrics, Stats};
use evolution_token::{RefreshTrigger, TokenEvent, TokenObserver};
use tower::ServiceExt;

use crate::support::{
    Capture, Case, FAKE_TOKEN, Value, assert_no_secret, capture, expect, histogram, recorder,
    request, stack,
};

fn refreshed(key_id: &str, trigger: RefreshTrigger, ms: u64, lifetime_secs: u64) -> TokenEvent {
    TokenEvent::RefreshSucceeded {
        key_id: Arc::from(key_id),
        trigger,
        duration: Duration::from_millis(ms),
        lifetime: Duration::from_secs(lifetime_secs),
    }
}

/// Runs the scenario against `metrics`, recording into the current thread's recorder.
pub(crate) async fn scenario(metrics: &Metrics) {
    let service = stack(metrics);
    let call = |case| service.clone().oneshot(request(case));
    // The client with a backup key starts on the primary.
    metrics.set_fallback_side(FallbackSide::Primary);

    // First use: one refresh at a short TTL, then three OK calls.
    metrics.on_event(&refreshed("key-primary", RefreshTrigger::FirstUse, 40, 2));
    for ms in [100, 200, 300] {
        call(Case::Ok(ms)).await.unwrap();
    }
    // One 503, retried.
    call(Case::Flaky).await.unwrap();
    // The short TTL runs out: refreshed ahead, for an hour this time.
    metrics.on_event(&refreshed("key-primary", RefreshTrigger::Ahead, 60, 3600));
    // One revoked token: the auth layer invalidates, refreshes and resends; the caller sees 200.
    metrics.on_event(&TokenEvent::Invalidated {
        key_id: Arc::from("key-primary"),
    });
    metrics.on_event(&refreshed(
        "key-primary",
        RefreshTrigger::Invalidated,
        80,
        3600,
    ));
    call(Case::Ok(120)).await.unwrap();
    // The primary key is rejected: one fallback switch, the backup's first token, the same
    // call answered by the backup.
    metrics.on_event(&TokenEvent::RefreshFailed {
        key_id: Arc::from("key-primary"),
        trigger: RefreshTrigger::Expired,
        duration: Duration::from_millis(30),
        error: evolution_token::TokenErrorKind::InvalidCredentials,
    });
    metrics.record_fallback_switch(FallbackSide::Backup, "auth_error");
    metrics.on_event(&refreshed("key-backup", RefreshTrigger::FirstUse, 50, 3600));
    call(Case::Ok(80)).await.unwrap();
    // Failures the caller sees: a 401 that survived the resend, and a reset connection whose
    // error message holds the token.
    call(Case::Status(401, 10)).await.unwrap();
    call(Case::Transport).await.unwrap_err();
}

#[tokio::test(start_paused = true)]
async fn every_series_is_exact_and_stats_agree() {
    let (recorder, snapshotter) = recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let metrics = Metrics::builder()
        .label("client", "billing")
        .key_id_label(true)
        .build()
        .unwrap();
    scenario(&metrics).await;
    let stats = metrics.stats();
    let capture = capture(&snapshotter);

    assert_eq!(
        capture.values,
        expect([
            (
                "evolution_requests_total{client=billing,outcome=ok,status=200}",
                Value::Counter(6)
            ),
            (
                "evolution_requests_total{client=billing,outcome=auth_error,status=401}",
                Value::Counter(1)
            ),
            (
                "evolution_requests_total{client=billing,outcome=transport_error,status=none}",
                Value::Counter(1)
            ),
            (
                "evolution_request_duration_seconds{client=billing}",
                histogram([0.1, 0.2, 0.3, 0.15, 0.12, 0.08, 0.01, 0.02])
            ),
            (
                "evolution_request_attempts{client=billing}",
                histogram([1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0])
            ),
            (
                "evolution_auth_errors_total{client=billing}",
                Value::Counter(1)
            ),
            (
                "evolution_retries_total{client=billing,reason=503}",
                Value::Counter(1)
            ),
            (
                "evolution_fallback_switches_total{client=billing,reason=auth_error}",
                Value::Counter(1)
            ),
            (
                "evolution_fallback_active{client=billing}",
                Value::Gauge(1.0)
            ),
            (
                "evolution_token_refreshes_total{client=billing,key_id=key-primary,result=success,trigger=first_use}",
                Value::Counter(1)
            ),
            (
                "evolution_token_refreshes_total{client=billing,key_id=key-primary,result=success,trigger=ahead}",
                Value::Counter(1)
            ),
            (
                "evolution_token_refreshes_total{client=billing,key_id=key-primary,result=success,trigger=invalidated}",
                Value::Counter(1)
            ),
            (
                "evolution_token_refreshes_total{client=billing,key_id=key-primary,result=failure,trigger=expired}",
                Value::Counter(1)
            ),
            (
                "evolution_token_refreshes_total{client=billing,key_id=key-backup,result=success,trigger=first_use}",
                Value::Counter(1)
            ),
            (
                "evolution_token_refresh_duration_seconds{client=billing,key_id=key-primary}",
                histogram([0.04, 0.06, 0.08, 0.03])
            ),
            (
                "evolution_token_refresh_duration_seconds{client=billing,key_id=key-backup}",
                histogram([0.05])
            ),
            (
                "evolution_token_expires_in_seconds{client=billing,key_id=key-primary}",
                Value::Gauge(3600.0)
            ),
            (
                "evolution_token_expires_in_seconds{client=billing,key_id=key-backup}",
                Value::Gauge(3600.0)
            ),
        ])
    );

    assert_stats_agree(&stats, &capture);
    assert_eq!(stats.total_requests, 8);
    assert_eq!(stats.successes, 6);
    assert_eq!(stats.success_rate, 75.0);
    assert!(!stats.using_primary);

    // Every metric is described, with the unit its name says.
    for name in capture.units.keys() {
        assert!(capture.descriptions.contains_key(name), "{name} described");
    }
    assert_eq!(
        capture.units["evolution_request_duration_seconds"],
        Some(metrics::Unit::Seconds)
    );
    assert_eq!(
        capture.units["evolution_requests_total"],
        Some(metrics::Unit::Count)
    );

    assert_no_secret(&capture, &stats, &[FAKE_TOKEN, "Bearer"]);
}

#[tokio::test(start_paused = true)]
async fn without_opting_in_no_key_id_is_recorded() {
    let (recorder, snapshotter) = recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let metrics = Metrics::builder()
        .label("client", "billing")
        .build()
        .unwrap();
    scenario(&metrics).await;
    let capture = capture(&snapshotter);

    assert!(
        capture
            .values
            .keys()
            .all(|series| !series.contains("key_id")),
        "{:#?}",
        capture.values.keys()
    );
    assert!(
        capture
            .values
            .keys()
            .all(|series| series.contains("{client=billing")),
        "every series has the constant label"
    );
    // Both keys' refreshes now share one series per result and trigger.
    assert_eq!(
        capture.values["evolution_token_refreshes_total{client=billing,result=success,trigger=first_use}"],
        Value::Counter(2)
    );
    assert_stats_agree(&metrics.stats(), &capture);
    assert_no_secret(&capture, &metrics.stats(), &[FAKE_TOKEN, "Bearer"]);
}

fn sum_counters(capture: &Capture, name: &str, filter: &str) -> u64 {
    capture
        .values
        .iter()
        .filter(|(series, _)| series.starts_with(&format!("{name}{{")) && series.contains(filter))
        .map(|(_, value)| match value {
            Value::Counter(n) => *n,
            other => panic!("{name} is a counter, not {other:?}"),
        })
        .sum()
}

fn samples(capture: &Capture, name: &str) -> Vec<f64> {
    let mut samples: Vec<f64> = capture
        .values
        .iter()
        .filter(|(series, _)| series.starts_with(&format!("{name}{{")))
        .flat_map(|(_, value)| match value {
            Value::Histogram(samples) => samples.clone(),
            other => panic!("{name} is a histogram, not {other:?}"),
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples
}

fn mean(samples: &[f64]) -> f64 {
    samples.iter().sum::<f64>() / samples.len() as f64
}

/// Nearest rank, as `Stats` computes it.
fn quantile(samples: &[f64], q: f64) -> f64 {
    let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1]
}

fn assert_close(stat: Duration, truth: f64, tolerance: f64, what: &str) {
    let stat = stat.as_secs_f64();
    assert!(
        (stat - truth).abs() <= tolerance,
        "{what}: Stats says {stat}, the recorder {truth}"
    );
}

/// `Stats` computed from the recorder's view of the same scenario.
fn assert_stats_agree(stats: &Stats, capture: &Capture) {
    assert_eq!(
        stats.total_requests,
        sum_counters(capture, "evolution_requests_total", "")
    );
    assert_eq!(
        stats.successes,
        sum_counters(capture, "evolution_requests_total", "outcome=ok,")
    );
    assert_eq!(
        stats.auth_errors,
        sum_counters(capture, "evolution_auth_errors_total", "")
    );
    assert_eq!(
        stats.auth_errors,
        sum_counters(capture, "evolution_requests_total", "outcome=auth_error,")
    );
    assert_eq!(
        stats.retries,
        sum_counters(capture, "evolution_retries_total", "")
    );
    assert_eq!(
        stats.fallback_switches,
        sum_counters(capture, "evolution_fallback_switches_total", "")
    );
    assert_eq!(
        stats.successful_refreshes,
        sum_counters(capture, "evolution_token_refreshes_total", "result=success")
    );
    assert_eq!(
        stats.failed_refreshes,
        sum_counters(capture, "evolution_token_refreshes_total", "result=failure")
    );
    let active = capture
        .values
        .iter()
        .find(|(series, _)| series.starts_with("evolution_fallback_active{"))
        .map(|(_, value)| value.clone());
    assert_eq!(
        active,
        Some(Value::Gauge(if stats.using_primary { 0.0 } else { 1.0 }))
    );

    let latencies = samples(capture, "evolution_request_duration_seconds");
    assert_eq!(latencies.len() as u64, stats.total_requests);
    assert_close(
        stats.avg_response_time,
        mean(&latencies),
        1e-6,
        "avg latency",
    );
    // Within one histogram bucket (at most 12.5 % wide) of the true quantiles.
    for (stat, q) in [
        (stats.p50_response_time, 0.5),
        (stats.p99_response_time, 0.99),
    ] {
        let truth = quantile(&latencies, q);
        assert_close(stat, truth, truth * 0.125, &format!("p{}", q * 100.0));
    }
    let refreshes = samples(capture, "evolution_token_refresh_duration_seconds");
    assert_eq!(
        refreshes.len() as u64,
        stats.successful_refreshes + stats.failed_refreshes
    );
    assert_close(
        stats.avg_refresh_time,
        mean(&refreshes),
        1e-6,
        "avg refresh",
    );
}

#[test]
fn stats_serialise_with_durations_in_seconds() {
    let metrics = Metrics::new();
    metrics.record_request(
        evolution_metrics::Outcome::Ok,
        Some(http::StatusCode::OK),
        Duration::from_millis(250),
        1,
    );
    let json = serde_json::to_value(metrics.stats()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "total_requests": 1,
            "successes": 1,
            "auth_errors": 0,
            "success_rate": 100.0,
            "avg_response_time": 0.25,
            "p50_response_time": 0.25,
            "p99_response_time": 0.25,
            "successful_refreshes": 0,
            "failed_refreshes": 0,
            "avg_refresh_time": 0.0,
            "using_primary": true,
            "retries": 0,
            "fallback_switches": 0,
            "input_tokens": 0,
            "output_tokens": 0,
        })
    );
}
