//! Events for observers, and the layer's shared state.

use std::time::Duration;

use evolution_fallback::{Failback, FallbackEvent, FallbackLayer, Side, SwitchReason};
use tower::Layer;
use tower_test::mock;

use crate::{Recorder, Req, Res, answer, call, reply};

#[tokio::test(start_paused = true)]
async fn every_change_is_an_event() {
    let (primary, mut p) = mock::pair::<Req, Res>();
    let (backup, mut b) = mock::pair::<Req, Res>();
    let recorder = Recorder::default();
    let layer = FallbackLayer::new(backup)
        .failback(Failback::After(Duration::from_secs(10)))
        .observer(recorder.clone());
    let handle = layer.handle();
    let service = layer.layer(primary);

    let pending = call(&service, "switch");
    reply(&mut p, answer(401, "no")).await;
    reply(&mut b, answer(200, "backup")).await;
    pending.await.unwrap().unwrap();

    tokio::time::advance(Duration::from_secs(10)).await;
    let pending = call(&service, "probe");
    reply(&mut p, answer(403, "no")).await;
    reply(&mut b, answer(200, "backup")).await;
    pending.await.unwrap().unwrap();

    tokio::time::advance(Duration::from_secs(10)).await;
    let pending = call(&service, "probe");
    reply(&mut p, answer(200, "primary")).await;
    pending.await.unwrap().unwrap();

    handle.rotate();

    let events = recorder.events();
    assert_eq!(
        events,
        vec![
            FallbackEvent::Switched {
                from: Side::Primary,
                to: Side::Backup,
                reason: SwitchReason::Unauthorized,
            },
            FallbackEvent::ProbeFailed {
                side: Side::Primary,
                reason: Some(SwitchReason::Forbidden),
            },
            FallbackEvent::FailedBack { to: Side::Primary },
            FallbackEvent::Rotated { to: Side::Backup },
        ]
    );
    let active: Vec<_> = events.iter().map(FallbackEvent::active).collect();
    assert_eq!(
        active,
        [Side::Backup, Side::Backup, Side::Primary, Side::Backup]
    );
    let switches = events.iter().filter(|e| e.is_switch()).count() as u64;
    assert_eq!(switches, handle.switches());
}

#[tokio::test(start_paused = true)]
async fn services_built_by_one_layer_share_one_state() {
    let (primary, mut p) = mock::pair::<Req, Res>();
    let (backup, mut b) = mock::pair::<Req, Res>();
    let layer = FallbackLayer::new(backup);
    let handle = layer.handle();
    let first = layer.layer(primary.clone());
    let second = layer.layer(primary);

    let pending = call(&first, "switch");
    reply(&mut p, answer(401, "no")).await;
    reply(&mut b, answer(200, "backup")).await;
    pending.await.unwrap().unwrap();

    assert!(!second.handle().using_primary());
    assert!(!handle.using_primary());
    let pending = call(&second, "hi");
    reply(&mut b, answer(200, "backup")).await;
    pending.await.unwrap().unwrap();
}

#[test]
fn handles_and_services_are_send_and_sync() {
    fn send_sync<T: Send + Sync + Clone + 'static>() {}
    send_sync::<evolution_fallback::FallbackHandle>();
    send_sync::<evolution_fallback::Fallback<mock::Mock<Req, Res>, mock::Mock<Req, Res>>>();
    send_sync::<FallbackLayer<mock::Mock<Req, Res>>>();
    send_sync::<evolution_fallback::BothKeysRejected>();
}
