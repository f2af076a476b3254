//! [`RedisServer`]: a private `redis-server` for the tests that need a real one.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

/// A private redis-server on a free loopback port, with nothing saved to disk, killed on
/// drop. Needs `redis-server` on `PATH` (`apt-get install redis-server`).
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    /// Starts one and waits until it accepts connections.
    pub async fn start() -> Self {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("a free port")
            .local_addr()
            .expect("its address")
            .port();
        let mut server = Self { child: None, port };
        server.restart().await;
        server
    }

    /// Starts it again on the same port, after [`stop`](Self::stop).
    pub async fn restart(&mut self) {
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is on PATH (apt-get install redis-server)");
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start on port {}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills it (a Redis outage); [`restart`](Self::restart) brings it back.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The Redis at `EVOLUTION_TEST_REDIS_URL` (CI's), or a private server, kept alive by the
/// returned guard.
pub async fn redis() -> (Option<RedisServer>, String) {
    match std::env::var("EVOLUTION_TEST_REDIS_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let server = RedisServer::start().await;
            let url = server.url();
            (Some(server), url)
        }
    }
}
