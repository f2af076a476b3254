//! The scripted scenario: every series has exactly the expected values and
//! labels, and `Stats` agrees.

use std::collections::BTreeMap;
use std::time::Duration;

use evolution_client::{EvolutionInference, Failback, Metrics, RetryConfig};
use evolution_emulator::{DEMO_MODEL, Emulator, Fault, Route};
use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use secrecy::ExposeSecret;

/// `name{label=value,...}` with labels sorted, for readable exact comparisons.
fn series_name(key: &metrics::Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

#[tokio::test(start_paused = true)]
async fn scripted_scenario_records_exactly_the_expected_series() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    let emu = Emulator::builder()
        .key("primary", "primary-secret")
        .key("backup", "backup-secret")
        .ttl(Duration::from_secs(40))
        .start()
        .await
        .unwrap();
    let llm = EvolutionInference::builder()
        .model(DEMO_MODEL)
        .key_id("primary")
        .secret("primary-secret")
        .backup_credentials("backup", "backup-secret")
        .failback(Failback::Never)
        .base_url(emu.base_url())
        .auth_url(emu.auth_url())
        .retry(
            RetryConfig::builder()
                .base_delay(Duration::from_millis(10))
                .build()
                .unwrap(),
        )
        .metrics(
            Metrics::builder()
                .label("client", "scenario")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();

    // 3 OK (first use of the primary key).
    for i in 0..3 {
        llm.invoke(format!("ok {i}")).await.unwrap();
    }
    // One 503, retried.
    emu.push_fault(Route::Chat, Fault::status(503));
    llm.invoke("retried").await.unwrap();
    // One revoked token: the auth layer refreshes and resends.
    let token = llm.token_manager().get_token().await.unwrap();
    emu.revoke_token(token.secret().expose_secret());
    llm.invoke("revoked").await.unwrap();
    // One refresh at the short TTL: past the 30 s buffer of a 40 s token.
    tokio::time::advance(Duration::from_secs(15)).await;
    llm.invoke("expired").await.unwrap();
    // One fallback switch: the primary key is disabled and its tokens revoked.
    emu.disable_key("primary");
    emu.revoke_key("primary");
    let answer = llm.invoke("switched").await.unwrap();
    assert_eq!(answer, "[backup] echo: switched");

    let snapshot = snapshotter.snapshot().into_vec();
    let mut counters = BTreeMap::new();
    let mut gauges = BTreeMap::new();
    let mut histograms = BTreeMap::new();
    for (key, _, _, value) in snapshot {
        let name = series_name(key.key());
        match (key.kind(), value) {
            (MetricKind::Counter, DebugValue::Counter(v)) => {
                counters.insert(name, v);
            }
            (MetricKind::Gauge, DebugValue::Gauge(v)) => {
                gauges.insert(name, v.into_inner());
            }
            (MetricKind::Histogram, DebugValue::Histogram(v)) => {
                histograms.insert(
                    name,
                    v.into_iter().map(|x| x.into_inner()).collect::<Vec<_>>(),
                );
            }
            other => panic!("unexpected series {name}: {other:?}"),
        }
    }

    let expected_counters: BTreeMap<String, u64> = [
        (
            "evolution_requests_total{client=scenario,outcome=ok,status=200}",
            7,
        ),
        ("evolution_retries_total{client=scenario,reason=503}", 1),
        // With a backup key, each key's token series carry its side.
        (
            "evolution_token_refreshes_total{client=scenario,result=success,side=primary,trigger=first_use}",
            1,
        ),
        (
            "evolution_token_refreshes_total{client=scenario,result=success,side=backup,trigger=first_use}",
            1,
        ),
        (
            "evolution_token_refreshes_total{client=scenario,result=success,side=primary,trigger=invalidated}",
            1,
        ),
        (
            "evolution_token_refreshes_total{client=scenario,result=success,side=primary,trigger=expired}",
            1,
        ),
        (
            "evolution_token_refreshes_total{client=scenario,result=failure,side=primary,trigger=invalidated}",
            1,
        ),
        (
            "evolution_fallback_switches_total{client=scenario,reason=iam_invalid_credentials}",
            1,
        ),
        // What the emulator's answers reported in `usage`, summed over the 7 answers.
        ("evolution_tokens_total{client=scenario,type=input}", 10),
        ("evolution_tokens_total{client=scenario,type=output}", 24),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    // A counter registered but never incremented (auth errors) reads 0.
    counters.retain(|_, v| *v > 0);
    assert_eq!(counters, expected_counters);

    assert_eq!(gauges["evolution_fallback_active{client=scenario}"], 1.0);
    // The primary's token was dropped (its key revoked); the backup's is fresh.
    assert_eq!(
        gauges["evolution_token_expires_in_seconds{client=scenario,side=primary}"],
        0.0
    );
    assert_eq!(
        gauges["evolution_token_expires_in_seconds{client=scenario,side=backup}"],
        40.0
    );

    assert_eq!(
        histograms["evolution_request_duration_seconds{client=scenario}"].len(),
        7
    );
    let mut attempts = histograms["evolution_request_attempts{client=scenario}"].clone();
    attempts.sort_by(f64::total_cmp);
    assert_eq!(attempts, vec![1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0]);
    assert_eq!(
        histograms["evolution_token_refresh_duration_seconds{client=scenario,side=primary}"].len(),
        4
    );
    assert_eq!(
        histograms["evolution_token_refresh_duration_seconds{client=scenario,side=backup}"].len(),
        1
    );

    // Stats agrees with the recorder.
    let stats = llm.stats();
    assert_eq!(stats.total_requests, 7);
    assert_eq!(stats.successes, 7);
    assert_eq!(stats.auth_errors, 0);
    assert_eq!(stats.success_rate, 100.0);
    assert_eq!(stats.successful_refreshes, 4);
    assert_eq!(stats.failed_refreshes, 1);
    assert_eq!(stats.retries, 1);
    assert_eq!(stats.fallback_switches, 1);
    assert!(!stats.using_primary);

    // Nothing secret in any label or value.
    let everything = format!("{counters:?}{gauges:?}{histograms:?}");
    for token in emu.issued_tokens() {
        assert!(!everything.contains(&token));
    }
    assert!(!everything.contains("secret"));
}
