//! `MetricsLayer` and `AttemptCounterLayer` over scripted services and tower-test mocks.

use std::io;
use std::time::Duration;

use evolution_metrics::{Attempts, Metrics, MetricsLayer, Outcome};
use http::{Request, Response};
use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

use crate::support::{Case, Value, capture, expect, histogram, recorder, request, stack};

#[tokio::test(start_paused = true)]
async fn each_call_is_one_observation_with_its_outcome_and_status() {
    let (recorder, snapshotter) = recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let metrics = Metrics::builder()
        .label("client", "billing")
        .build()
        .unwrap();
    let service = stack(&metrics);

    for case in [
        Case::Ok(100),
        Case::Status(404, 10),
        Case::Status(401, 10),
        Case::Status(403, 10),
        Case::Status(500, 30),
        Case::Flaky,
        Case::RejectedKey,
        Case::Timeout,
        Case::Transport,
    ] {
        let _ = service.clone().oneshot(request(case)).await;
    }
    let hung = service.clone().oneshot(request(Case::Hang));
    assert!(
        tokio::time::timeout(Duration::from_millis(40), hung)
            .await
            .is_err()
    );

    let requests = |outcome: &str, status: &str| {
        format!("evolution_requests_total{{client=billing,outcome={outcome},status={status}}}")
    };
    let mut expected = expect([
        (
            "evolution_request_duration_seconds{client=billing}",
            histogram([0.1, 0.01, 0.01, 0.01, 0.03, 0.15, 0.005, 1.0, 0.02, 0.04]),
        ),
        (
            "evolution_request_attempts{client=billing}",
            histogram([1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0]),
        ),
        (
            "evolution_auth_errors_total{client=billing}",
            Value::Counter(3),
        ),
        (
            "evolution_retries_total{client=billing,reason=503}",
            Value::Counter(1),
        ),
    ]);
    for (outcome, status, count) in [
        ("ok", "200", 2),
        ("client_error", "404", 1),
        ("auth_error", "401", 1),
        ("auth_error", "403", 1),
        ("server_error", "500", 1),
        ("auth_error", "none", 1),
        ("timeout", "none", 1),
        ("transport_error", "none", 1),
        ("cancelled", "none", 1),
    ] {
        expected.insert(requests(outcome, status), Value::Counter(count));
    }
    assert_eq!(capture(&snapshotter).values, expected);

    let stats = metrics.stats();
    assert_eq!(stats.total_requests, 10);
    assert_eq!(stats.successes, 2);
    assert_eq!(stats.auth_errors, 3);
    assert_eq!(stats.success_rate, 20.0);
    assert_eq!(stats.retries, 1);
    assert_eq!(stats.avg_response_time, Duration::from_micros(137_500));
}

#[tokio::test(start_paused = true)]
async fn errors_pass_through_unchanged() {
    let (recorder, snapshotter) = recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let metrics = Metrics::new();
    let (inner, mut handle) = mock::pair::<Request<()>, Response<()>>();
    let mut service = MetricsLayer::new(metrics.clone()).layer(inner);

    let call = service.ready().await.unwrap().call(Request::new(()));
    let (_request, respond) = handle.next_request().await.unwrap();
    respond.send_error(io::Error::new(io::ErrorKind::ConnectionRefused, "refused"));

    let error = call.await.unwrap_err();
    let io = error
        .downcast_ref::<io::Error>()
        .expect("the same io::Error");
    assert_eq!(io.kind(), io::ErrorKind::ConnectionRefused);
    assert_eq!(io.to_string(), "refused");
    assert_eq!(
        Outcome::from_error(&*error),
        Outcome::TransportError,
        "what the layer recorded"
    );
    let values = capture(&snapshotter).values;
    assert_eq!(
        values["evolution_requests_total{outcome=transport_error,status=none}"],
        Value::Counter(1)
    );
}

#[tokio::test(start_paused = true)]
async fn attempts_are_not_recorded_without_a_counter_below() {
    let (recorder, snapshotter) = recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let metrics = Metrics::new();
    let (inner, mut handle) = mock::pair::<Request<()>, Response<()>>();
    let mut service = metrics.layer().layer(inner);

    let call = service.ready().await.unwrap().call(Request::new(()));
    let (_, respond) = handle.next_request().await.unwrap();
    tokio::time::advance(Duration::from_millis(7)).await;
    respond.send_response(Response::new(()));
    call.await.unwrap();

    assert_eq!(
        capture(&snapshotter).values,
        expect([
            (
                "evolution_requests_total{outcome=ok,status=200}",
                Value::Counter(1)
            ),
            ("evolution_request_duration_seconds{}", histogram([0.007])),
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_is_recorded_as_cancelled() {
    let (recorder, snapshotter) = recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let metrics = Metrics::new();
    let (inner, mut handle) = mock::pair::<Request<()>, Response<()>>();
    let mut service = metrics.layer().layer(inner);

    let call = service.ready().await.unwrap().call(Request::new(()));
    let (_request, _respond) = handle.next_request().await.unwrap();
    tokio::time::advance(Duration::from_millis(3)).await;
    drop(call);

    let values = capture(&snapshotter).values;
    assert_eq!(
        values["evolution_requests_total{outcome=cancelled,status=none}"],
        Value::Counter(1)
    );
    assert_eq!(
        values["evolution_request_duration_seconds{}"],
        histogram([0.003])
    );
    assert_eq!(metrics.stats().total_requests, 1);
}

#[tokio::test]
async fn nested_metrics_layers_share_one_attempt_counter() {
    let outer = Metrics::new();
    let inner = Metrics::new();
    let service = tower::ServiceBuilder::new()
        .layer(outer.layer())
        .layer(inner.layer())
        .layer(evolution_metrics::AttemptCounterLayer::new())
        .service(tower::service_fn(|_request: Request<()>| {
            assert_eq!(Attempts::current(), Some(1));
            async { Ok::<_, std::convert::Infallible>(Response::new(())) }
        }));
    service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(outer.stats().total_requests, 1);
    assert_eq!(inner.stats().total_requests, 1);
}
