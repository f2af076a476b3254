//! Swapping the sides by hand.

use std::time::Duration;

use evolution_fallback::{Failback, Side};

use crate::{answer, assert_idle, call, mocks, reply};

#[tokio::test(start_paused = true)]
async fn rotate_moves_traffic_and_failback_does_not_undo_it() {
    let (service, mut p, mut b) = mocks();
    let service = service.failback(Failback::After(Duration::from_secs(1)));
    let handle = service.handle();

    assert_eq!(handle.rotate(), Side::Backup);
    assert!(!handle.using_primary());
    assert_eq!(handle.preferred(), Side::Backup);

    tokio::time::advance(Duration::from_secs(60)).await;
    for _ in 0..2 {
        let pending = call(&service, "hi");
        reply(&mut b, answer(200, "backup")).await;
        pending.await.unwrap().unwrap();
    }
    assert_idle(&mut p).await;

    assert_eq!(handle.rotate(), Side::Primary);
    let pending = call(&service, "hi");
    reply(&mut p, answer(200, "primary")).await;
    pending.await.unwrap().unwrap();
    assert_eq!(handle.switches(), 2);
}

#[tokio::test(start_paused = true)]
async fn after_rotation_the_former_primary_is_the_backup() {
    let (service, mut p, mut b) = mocks();
    let handle = service.handle();
    handle.rotate();

    let pending = call(&service, "hi");
    reply(&mut b, answer(401, "revoked")).await;
    reply(&mut p, answer(200, "primary")).await;
    assert_eq!(*pending.await.unwrap().unwrap().body(), "primary");
    assert_eq!(handle.active(), Side::Primary);
    assert_eq!(handle.preferred(), Side::Backup);
    assert_eq!(handle.switches(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failure_from_before_a_rotation_does_not_switch() {
    let (service, mut p, mut b) = mocks();
    let handle = service.handle();
    let pending = call(&service, "old");
    let (_, send) = p.next_request().await.unwrap();
    handle.rotate();
    handle.rotate();
    // The primary refused a request routed before the rotations: it is resent, no switch.
    send.send_response(answer(401, "no"));
    reply(&mut b, answer(200, "backup")).await;
    pending.await.unwrap().unwrap();
    assert_eq!(handle.active(), Side::Primary);
    assert_eq!(handle.switches(), 2);
}
