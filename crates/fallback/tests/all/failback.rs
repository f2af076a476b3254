//! Back to the primary after the interval, one probe at a time.

use std::time::Duration;

use evolution_fallback::{DEFAULT_FAILBACK_INTERVAL, Failback, Fallback};

use crate::{MockHandle, Side, answer, assert_idle, call, mocks, reply};

/// A fallback that has switched to the backup.
async fn on_backup(failback: Failback) -> (Fallback<Side, Side>, MockHandle, MockHandle) {
    let (service, mut p, mut b) = mocks();
    let service = service.failback(failback);
    let pending = call(&service, "switch");
    reply(&mut p, answer(401, "no")).await;
    reply(&mut b, answer(200, "backup")).await;
    pending.await.unwrap().unwrap();
    assert!(!service.handle().using_primary());
    (service, p, b)
}

#[tokio::test(start_paused = true)]
async fn the_default_interval_is_five_minutes() {
    assert_eq!(
        Failback::default(),
        Failback::After(DEFAULT_FAILBACK_INTERVAL)
    );
    assert_eq!(DEFAULT_FAILBACK_INTERVAL, Duration::from_secs(300));
}

#[tokio::test(start_paused = true)]
async fn after_the_interval_one_request_probes_the_primary() {
    let (service, mut p, mut b) = on_backup(Failback::default()).await;
    let handle = service.handle();

    tokio::time::advance(DEFAULT_FAILBACK_INTERVAL - Duration::from_secs(1)).await;
    let pending = call(&service, "early");
    assert_eq!(reply(&mut b, answer(200, "backup")).await, "early");
    pending.await.unwrap().unwrap();
    assert_idle(&mut p).await;

    tokio::time::advance(Duration::from_secs(2)).await;
    let probe = call(&service, "probe");
    let (request, send_probe) = p.next_request().await.unwrap();
    assert_eq!(*request.body(), "probe");
    // While the probe runs, others keep using the backup.
    let other = call(&service, "other");
    assert_eq!(reply(&mut b, answer(200, "backup")).await, "other");
    other.await.unwrap().unwrap();

    send_probe.send_response(answer(200, "primary"));
    assert_eq!(*probe.await.unwrap().unwrap().body(), "primary");
    assert!(handle.using_primary());
    assert_eq!(handle.switches(), 2);

    let pending = call(&service, "after");
    assert_eq!(reply(&mut p, answer(200, "primary")).await, "after");
    pending.await.unwrap().unwrap();
    assert_idle(&mut b).await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_restarts_the_interval_and_its_caller_gets_the_backup() {
    let interval = Duration::from_secs(60);
    let (service, mut p, mut b) = on_backup(Failback::After(interval)).await;
    let handle = service.handle();

    tokio::time::advance(interval).await;
    let probe = call(&service, "probe");
    assert_eq!(reply(&mut p, answer(401, "still no")).await, "probe");
    assert_eq!(reply(&mut b, answer(200, "backup")).await, "probe");
    assert_eq!(*probe.await.unwrap().unwrap().body(), "backup");
    assert!(!handle.using_primary());
    assert_eq!(handle.switches(), 1, "a failed probe is not a switch");

    // The interval starts again from the failed probe.
    tokio::time::advance(interval - Duration::from_secs(1)).await;
    let pending = call(&service, "early");
    assert_eq!(reply(&mut b, answer(200, "backup")).await, "early");
    pending.await.unwrap().unwrap();
    assert_idle(&mut p).await;

    tokio::time::advance(Duration::from_secs(1)).await;
    let probe = call(&service, "probe again");
    assert_eq!(reply(&mut p, answer(200, "primary")).await, "probe again");
    assert_eq!(*probe.await.unwrap().unwrap().body(), "primary");
    assert!(handle.using_primary());
}

#[tokio::test(start_paused = true)]
async fn a_probe_answered_with_a_server_error_does_not_fail_back() {
    let (service, mut p, mut b) = on_backup(Failback::After(Duration::ZERO)).await;
    let probe = call(&service, "probe");
    reply(&mut p, answer(503, "busy")).await;
    reply(&mut b, answer(200, "backup")).await;
    assert_eq!(*probe.await.unwrap().unwrap().body(), "backup");
    assert!(!service.handle().using_primary());
}

#[tokio::test(start_paused = true)]
async fn failback_never_stays_on_the_backup() {
    let (service, mut p, mut b) = on_backup(Failback::Never).await;
    tokio::time::advance(Duration::from_secs(24 * 3600)).await;
    for _ in 0..3 {
        let pending = call(&service, "hi");
        reply(&mut b, answer(200, "backup")).await;
        pending.await.unwrap().unwrap();
    }
    assert_idle(&mut p).await;
    assert!(!service.handle().using_primary());
}

#[tokio::test(start_paused = true)]
async fn probe_now_probes_even_with_failback_never() {
    let (service, mut p, mut b) = on_backup(Failback::Never).await;
    service.handle().probe_now();
    let probe = call(&service, "probe");
    assert_eq!(reply(&mut p, answer(200, "primary")).await, "probe");
    probe.await.unwrap().unwrap();
    assert!(service.handle().using_primary());
    assert_idle(&mut b).await;
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_lets_the_next_request_probe() {
    let (service, mut p, mut b) = on_backup(Failback::After(Duration::ZERO)).await;
    let probe = call(&service, "cancelled");
    let (_, send) = p.next_request().await.unwrap();
    probe.abort();
    let _ = probe.await;
    drop(send);

    let probe = call(&service, "probe");
    assert_eq!(reply(&mut p, answer(200, "primary")).await, "probe");
    probe.await.unwrap().unwrap();
    assert!(service.handle().using_primary());
    assert_idle(&mut b).await;
}

#[tokio::test(start_paused = true)]
async fn the_backup_refused_while_serving_tries_the_primary_and_fails_back() {
    let (service, mut p, mut b) = on_backup(Failback::Never).await;
    let pending = call(&service, "hi");
    reply(&mut b, answer(401, "revoked")).await;
    assert_eq!(reply(&mut p, answer(200, "primary")).await, "hi");
    assert_eq!(*pending.await.unwrap().unwrap().body(), "primary");
    assert!(service.handle().using_primary());
    assert_eq!(service.handle().switches(), 2);
}
