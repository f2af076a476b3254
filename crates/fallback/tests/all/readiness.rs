//! Readiness is driven per call, on the side the call goes to.

use std::future::poll_fn;
use std::time::Duration;

use evolution_fallback::{EndpointFailure, Failback};
use tower::Service;

use crate::{answer, assert_idle, call, mocks, mocks_with, reply};

#[tokio::test(start_paused = true)]
async fn fallback_is_always_ready() {
    let (mut service, mut p, mut b) = mocks();
    p.allow(0);
    b.allow(0);
    poll_fn(|cx| service.poll_ready(cx)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_backup_that_is_not_ready_does_not_hold_up_the_primary() {
    let (service, mut p, mut b) = mocks();
    b.allow(0);
    let pending = call(&service, "hi");
    reply(&mut p, answer(200, "primary")).await;
    assert_eq!(*pending.await.unwrap().unwrap().body(), "primary");
}

#[tokio::test(start_paused = true)]
async fn a_primary_that_is_not_ready_does_not_hold_up_the_backup() {
    let (service, mut p, mut b) = mocks();
    let service = service.failback(Failback::Never);
    let pending = call(&service, "switch");
    reply(&mut p, answer(401, "no")).await;
    reply(&mut b, answer(200, "backup")).await;
    pending.await.unwrap().unwrap();

    p.allow(0);
    let pending = call(&service, "hi");
    reply(&mut b, answer(200, "backup")).await;
    assert_eq!(*pending.await.unwrap().unwrap().body(), "backup");
}

#[tokio::test(start_paused = true)]
async fn the_call_waits_for_its_side_to_become_ready() {
    let (service, mut p, _b) = mocks();
    p.allow(0);
    let pending = call(&service, "hi");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_idle(&mut p).await;
    p.allow(1);
    reply(&mut p, answer(200, "primary")).await;
    assert_eq!(*pending.await.unwrap().unwrap().body(), "primary");
}

#[tokio::test(start_paused = true)]
async fn a_readiness_error_is_a_failure_of_that_side() {
    let (service, mut p, mut b) = mocks_with(EndpointFailure);
    p.send_error(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
    let pending = call(&service, "hi");
    reply(&mut b, answer(200, "backup")).await;
    assert_eq!(*pending.await.unwrap().unwrap().body(), "backup");
    assert!(!service.handle().using_primary());
}
