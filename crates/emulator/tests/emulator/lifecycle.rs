//! Starting, cloning and stopping.

use std::time::Duration;

use evolution_emulator::{Emulator, Route};

use crate::support::{chat_status, demo_token, http, start};

#[tokio::test]
async fn clones_steer_the_same_server() {
    let emu = start().await;
    let clone = emu.clone();
    clone.set_latency(Route::Models, Duration::ZERO);
    let http = http();
    let token = demo_token(&http, &emu).await;
    assert_eq!(chat_status(&http, &clone, &token).await, 200);
    assert_eq!(clone.stats(), emu.stats());
    assert_eq!(clone.issued_tokens(), [token]);
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let clone = emu.clone();
    emu.shutdown().await;
    emu.shutdown().await;
    assert_eq!(chat_status(&http, &clone, &token).await, 0);
    assert!(tokio::net::TcpStream::connect(clone.addr()).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_stops_the_server() {
    let emu = start().await;
    let addr = emu.addr();
    drop(emu);
    let mut refused = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused);
}

#[tokio::test]
async fn builds_on_a_chosen_port() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let emu = Emulator::builder().port(port).start().await.unwrap();
    assert_eq!(emu.addr().port(), port);
}
