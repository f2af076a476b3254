//! `Metrics` as a token observer, fed synthetic `TokenEvent`s.

use std::sync::Arc;
use std::time::Duration;

use evolution_metrics::{FallbackSide, Metrics};
use evolution_token::{
    Credentials, RefreshTrigger, TokenErrorKind, TokenEvent, TokenManager, TokenObserver,
};
use tower::{Layer, ServiceExt};

use crate::support::{Value, assert_no_secret, capture, expect, histogram, recorder};

fn events(key_id: &str) -> Vec<TokenEvent> {
    let key_id: Arc<str> = Arc::from(key_id);
    vec![
        TokenEvent::RefreshStarted {
            key_id: key_id.clone(),
            trigger: RefreshTrigger::FirstUse,
        },
        TokenEvent::RefreshSucceeded {
            key_id: key_id.clone(),
            trigger: RefreshTrigger::FirstUse,
            duration: Duration::from_millis(120),
            lifetime: Duration::from_secs(3600),
        },
        TokenEvent::Invalidated {
            key_id: key_id.clone(),
        },
        TokenEvent::RefreshSucceeded {
            key_id: key_id.clone(),
            trigger: RefreshTrigger::Invalidated,
            duration: Duration::from_millis(80),
            lifetime: Duration::from_secs(60),
        },
        TokenEvent::RefreshFailed {
            key_id: key_id.clone(),
            trigger: RefreshTrigger::Ahead,
            duration: Duration::from_secs(2),
            error: TokenErrorKind::Unavailable,
        },
        TokenEvent::StaleServed {
            key_id,
            expires_in: Duration::from_secs(30),
        },
    ]
}

#[test]
fn refreshes_become_token_series_without_key_ids_by_default() {
    let (recorder, snapshotter) = recorder();
    let metrics = metrics::with_local_recorder(&recorder, || {
        let metrics = Metrics::builder()
            .label("client", "billing")
            .build()
            .unwrap();
        for event in events("key-primary") {
            metrics.on_event(&event);
        }
        metrics
    });

    assert_eq!(
        capture(&snapshotter).values,
        expect([
            (
                "evolution_token_refreshes_total{client=billing,result=success,trigger=first_use}",
                Value::Counter(1)
            ),
            (
                "evolution_token_refreshes_total{client=billing,result=success,trigger=invalidated}",
                Value::Counter(1)
            ),
            (
                "evolution_token_refreshes_total{client=billing,result=failure,trigger=ahead}",
                Value::Counter(1)
            ),
            (
                "evolution_token_refresh_duration_seconds{client=billing}",
                histogram([0.12, 0.08, 2.0])
            ),
            (
                "evolution_token_expires_in_seconds{client=billing}",
                Value::Gauge(30.0)
            ),
        ])
    );
    let stats = metrics.stats();
    assert_eq!(stats.successful_refreshes, 2);
    assert_eq!(stats.failed_refreshes, 1);
    assert_eq!(stats.avg_refresh_time, Duration::from_nanos(733_333_333));
}

#[test]
fn key_ids_label_token_series_when_opted_in() {
    let (recorder, snapshotter) = recorder();
    metrics::with_local_recorder(&recorder, || {
        let metrics = Metrics::builder().key_id_label(true).build().unwrap();
        for event in events("key-primary").into_iter().take(2) {
            metrics.on_event(&event);
        }
        metrics.on_event(&TokenEvent::RefreshSucceeded {
            key_id: Arc::from("key-backup"),
            trigger: RefreshTrigger::Monitor,
            duration: Duration::from_millis(50),
            lifetime: Duration::from_secs(900),
        });
        metrics.on_event(&TokenEvent::Invalidated {
            key_id: Arc::from("key-backup"),
        });
    });

    assert_eq!(
        capture(&snapshotter).values,
        expect([
            (
                "evolution_token_refreshes_total{key_id=key-primary,result=success,trigger=first_use}",
                Value::Counter(1)
            ),
            (
                "evolution_token_refreshes_total{key_id=key-backup,result=success,trigger=monitor}",
                Value::Counter(1)
            ),
            (
                "evolution_token_refresh_duration_seconds{key_id=key-primary}",
                histogram([0.12])
            ),
            (
                "evolution_token_refresh_duration_seconds{key_id=key-backup}",
                histogram([0.05])
            ),
            (
                "evolution_token_expires_in_seconds{key_id=key-primary}",
                Value::Gauge(3600.0)
            ),
            (
                "evolution_token_expires_in_seconds{key_id=key-backup}",
                Value::Gauge(0.0)
            ),
        ])
    );
}

/// A real manager whose IAM exchange fails: its events reach the handle, its secret does not.
#[tokio::test]
async fn a_token_manager_reports_through_the_handle_without_its_secret() {
    const SECRET: &str = "s3cr3t-key-secret-value";
    let (recorder, snapshotter) = recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let metrics = Metrics::builder().key_id_label(true).build().unwrap();
    // A loopback port nobody listens on: the exchange fails at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let tokens = TokenManager::builder(Credentials::new("key-id-1", SECRET))
        .auth_url(format!("http://{closed}/api/v1/auth/token"))
        .allow_insecure_http(true)
        .fetch_attempts(1)
        .observer(metrics.clone())
        .build()
        .unwrap();

    // A call whose token cannot be obtained, through the layer.
    let service = metrics
        .layer()
        .layer(tower::service_fn(move |_request: http::Request<()>| {
            let tokens = tokens.clone();
            async move {
                tokens.get_token().await?;
                Ok::<_, evolution_token::BoxError>(http::Response::new(()))
            }
        }));
    let error = service.oneshot(http::Request::new(())).await.unwrap_err();
    assert!(
        error
            .downcast_ref::<evolution_token::TokenError>()
            .is_some()
    );

    let capture = capture(&snapshotter);
    assert_eq!(
        capture.values["evolution_token_refreshes_total{key_id=key-id-1,result=failure,trigger=first_use}"],
        Value::Counter(1)
    );
    assert_eq!(
        capture.values["evolution_requests_total{outcome=token_error,status=none}"],
        Value::Counter(1)
    );
    assert_eq!(metrics.stats().failed_refreshes, 1);
    assert_no_secret(&capture, &metrics.stats(), &[SECRET]);
}

/// A primary and a backup key each report through their own side: the backup's
/// invalidation zeroes the backup's gauge only, the primary's keeps its token's lifetime.
#[test]
fn primary_and_backup_token_series_are_apart_by_side() {
    let (recorder, snapshotter) = recorder();
    let metrics = metrics::with_local_recorder(&recorder, || {
        let metrics = Metrics::builder()
            .label("client", "billing")
            .build()
            .unwrap();
        let (primary, backup) = (
            metrics.token_observer(FallbackSide::Primary),
            metrics.token_observer(FallbackSide::Backup),
        );
        let refreshed = |key_id: &str, lifetime: u64| TokenEvent::RefreshSucceeded {
            key_id: Arc::from(key_id),
            trigger: RefreshTrigger::FirstUse,
            duration: Duration::from_millis(100),
            lifetime: Duration::from_secs(lifetime),
        };
        primary.on_event(&refreshed("key-primary", 3600));
        backup.on_event(&refreshed("key-backup", 1800));
        backup.on_event(&TokenEvent::Invalidated {
            key_id: Arc::from("key-backup"),
        });
        metrics
    });

    assert_eq!(
        capture(&snapshotter).values,
        expect([
            (
                "evolution_token_refreshes_total{client=billing,side=primary,result=success,trigger=first_use}",
                Value::Counter(1)
            ),
            (
                "evolution_token_refreshes_total{client=billing,side=backup,result=success,trigger=first_use}",
                Value::Counter(1)
            ),
            (
                "evolution_token_refresh_duration_seconds{client=billing,side=primary}",
                histogram([0.1])
            ),
            (
                "evolution_token_refresh_duration_seconds{client=billing,side=backup}",
                histogram([0.1])
            ),
            (
                "evolution_token_expires_in_seconds{client=billing,side=primary}",
                Value::Gauge(3600.0)
            ),
            (
                "evolution_token_expires_in_seconds{client=billing,side=backup}",
                Value::Gauge(0.0)
            ),
        ])
    );
    assert_eq!(metrics.stats().successful_refreshes, 2);
    // `side` is this crate's label: a constant label may not take it.
    assert!(matches!(
        Metrics::builder().label("side", "x").build(),
        Err(evolution_metrics::ConfigError::ReservedLabelName { .. })
    ));
}
