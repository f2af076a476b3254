//! Shared set-up of the gateway's test binaries: a gateway served on a free loopback port,
//! a client stack that retries fast, OpenAI error checks, and [`Upstream`], an API of the
//! tests' own whose streams wait for the test.
//!
//! Included by `tests/all` and `tests/metrics` (`#[path]`), so not every binary uses all of it.
#![allow(dead_code)]

pub(crate) mod upstream;

use std::net::SocketAddr;
use std::time::Duration;

use evolution_client::{EvolutionInference, EvolutionInferenceBuilder, RetryConfig};
use evolution_emulator::Emulator;
use evolution_gateway::{Drained, Gateway, GatewayConfig, GatewayKeys};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub(crate) use self::upstream::Upstream;

/// The model the requests of the tests name.
pub(crate) const MODEL: &str = "demo-model";
/// The key clients present when a test configures gateway keys.
pub(crate) const GATEWAY_KEY: &str = "gw-key-7d1c9a3e-never-echoed";

/// A bound that no answer of a healthy test comes near; a hang fails the test instead of
/// stalling the run.
pub(crate) const LIMIT: Duration = Duration::from_secs(10);

/// Retries as the default stack makes them (3 attempts, `Retry-After` honoured up to 60 s),
/// with millisecond backoffs so that a test of "after the retries" takes no seconds.
pub(crate) fn fast_retry() -> RetryConfig {
    RetryConfig::builder()
        .base_delay(Duration::from_millis(5))
        .max_delay(Duration::from_millis(20))
        .build()
        .expect("a valid retry configuration")
}

/// A client for `emu` with the tests' key and [`fast_retry`], to adjust.
pub(crate) fn client_builder(emu: &Emulator) -> EvolutionInferenceBuilder {
    evolution_testkit::builder(emu).retry(fast_retry())
}

/// A client for `emu`'s IAM and the API at `base_url`.
pub(crate) fn client_for(emu: &Emulator, base_url: &str) -> EvolutionInference {
    client_builder(emu)
        .base_url(base_url)
        .build()
        .expect("a valid client configuration")
}

/// Settings with `default_model` set and everything else default.
pub(crate) fn config() -> GatewayConfig {
    GatewayConfig {
        default_model: Some(MODEL.to_owned()),
        ..GatewayConfig::default()
    }
}

/// [`config`] with one gateway key, [`GATEWAY_KEY`].
pub(crate) fn keyed_config() -> GatewayConfig {
    GatewayConfig {
        keys: GatewayKeys::parse_list(GATEWAY_KEY).expect("a valid key"),
        ..config()
    }
}

/// A gateway being served on a free loopback port until [`shutdown`](Self::shutdown).
pub(crate) struct Served {
    pub(crate) addr: SocketAddr,
    pub(crate) url: String,
    shutdown: Option<oneshot::Sender<()>>,
    served: Option<JoinHandle<std::io::Result<Drained>>>,
}

impl Served {
    pub(crate) async fn start(gateway: Gateway) -> Self {
        let scheme = if gateway.is_tls() { "https" } else { "http" };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let (shutdown, signal) = oneshot::channel::<()>();
        let served = tokio::spawn(gateway.serve(listener, async move {
            let _ = signal.await;
        }));
        Self {
            addr,
            url: format!("{scheme}://{addr}"),
            shutdown: Some(shutdown),
            served: Some(served),
        }
    }

    /// A gateway for `client` with `config`, served.
    pub(crate) async fn with(client: EvolutionInference, config: GatewayConfig) -> Self {
        Self::start(Gateway::new(client, config).expect("a valid gateway configuration")).await
    }

    /// `url` + `path`.
    pub(crate) fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Completes the shutdown future given to `serve`.
    pub(crate) fn shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// What `serve` returned, waiting at most `within`.
    pub(crate) async fn drained(&mut self, within: Duration) -> Drained {
        let served = self.served.take().expect("drained once");
        tokio::time::timeout(within, served)
            .await
            .expect("serve() returns in time")
            .expect("the serve task does not panic")
            .expect("serve() ends without a listener error")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(served) = &self.served {
            served.abort();
        }
    }
}

thread_local! {
    /// One client per test (libtest runs each test on a thread of its own): building one
    /// loads the TLS roots, tens of milliseconds in a debug build.
    static HTTP: reqwest::Client = reqwest::Client::builder()
        .no_proxy()
        .timeout(LIMIT)
        .build()
        .expect("a reqwest client");
}

/// A reqwest client that goes straight to loopback (no proxy from the environment).
pub(crate) fn http() -> reqwest::Client {
    HTTP.with(reqwest::Client::clone)
}

/// A chat request naming [`MODEL`].
pub(crate) fn chat_body(content: &str) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": content}]})
}

/// An answer read in full.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) async fn of(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.expect("the body reads");
        Self {
            status,
            headers,
            body,
        }
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {self:?}"))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|value| value.to_str().expect("ASCII"))
    }

    /// Asserts that this is the gateway's own error: `status`, `application/json`, and
    /// exactly `{"error": {"message": <non-empty>, "type": <string>, "code": code, "param":
    /// null}}`. Returns the message.
    pub(crate) fn assert_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        let value = self.json();
        let top = value.as_object().expect("an object");
        assert_eq!(top.keys().collect::<Vec<_>>(), ["error"], "{self:?}");
        let error = value["error"].as_object().expect("error is an object");
        let mut keys: Vec<&str> = error.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["code", "message", "param", "type"], "{self:?}");
        assert_eq!(error["code"], code, "{self:?}");
        assert!(error["type"].as_str().is_some_and(|kind| !kind.is_empty()));
        let message = error["message"].as_str().expect("a string message");
        assert!(!message.is_empty(), "{self:?}");
        message.to_owned()
    }

    /// Headers and body as one text, to search for what must never be there.
    pub(crate) fn everything(&self) -> String {
        let mut text = format!("{}\n", self.status);
        for (name, value) in &self.headers {
            text.push_str(&format!(
                "{name}: {}\n",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        text.push_str(&self.body);
        text
    }
}

/// A loopback port nothing listens on (bound, then released).
pub(crate) fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local address").port()
}
