//! An OpenAI-compatible gateway in front of Cloud.ru Evolution, so that code in any language
//! gets the whole client stack (IAM tokens, refresh, retries, key fallback, metrics) by
//! pointing an OpenAI SDK's `base_url` at it, with no token code of its own.
//!
//! Every upstream call goes through one [`EvolutionInference`]: one token manager, one
//! stack, shared by all clients of the gateway. The gateway adds what a server in front of
//! it needs: its own keys ([`GatewayKeys`]), a body limit, load shedding, request ids,
//! OpenAI-shaped errors ([`ApiError`]), health and Prometheus endpoints, TLS, and a graceful
//! shutdown.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/chat/completions` | forwarded; `stream: true` answers pass through chunk by chunk |
//! | `POST /v1/embeddings` | forwarded |
//! | `GET /v1/models` | forwarded |
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 when a token for the key in use is held or can be obtained, else 503 and why |
//! | `GET /metrics` | Prometheus: every `evolution_*` series, and the gateway's ([`telemetry`]) |
//!
//! ```no_run
//! use evolution_client::EvolutionInference;
//! use evolution_gateway::{Gateway, GatewayConfig, GatewayKeys};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = EvolutionInference::from_env()?; // EVOLUTION_KEY_ID, _SECRET, _BASE_URL, _MODEL
//! let config = GatewayConfig {
//!     listen: "0.0.0.0:8080".parse()?,
//!     keys: GatewayKeys::parse_list("a-long-random-key")?,
//!     ..GatewayConfig::default()
//! };
//! let gateway = Gateway::new(client, config)?;
//! let listener = tokio::net::TcpListener::bind(gateway.config().listen).await?;
//! gateway.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod admit;
mod body;
mod config;
mod error;
mod health;
mod keys;
mod proxy;
mod router;
mod server;
pub mod telemetry;
mod tls;

use std::future::Future;
use std::sync::Arc;

use evolution_client::EvolutionInference;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

pub use self::config::{
    ConfigError, DEFAULT_DRAIN_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_LISTEN,
    DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_IN_FLIGHT, GatewayConfig, TlsFiles,
};
pub use self::error::ApiError;
pub use self::keys::{ENV_GATEWAY_KEYS, GatewayKeys, KeysError};
pub use self::server::Drained;

/// The gateway: a client, its settings, and the state its routes share. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Gateway {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    client: EvolutionInference,
    config: GatewayConfig,
    upstream: proxy::Upstream,
    /// One permit per request in flight, up to `max_in_flight`.
    slots: Arc<Semaphore>,
    tls: Option<TlsAcceptor>,
    prometheus: Option<PrometheusHandle>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.config)
            .field("upstream", &self.client.base_url())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway that calls upstream with `client`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for settings it refuses: no keys on a non-loopback address, a zero
    /// limit, TLS files that cannot be used.
    pub fn new(client: EvolutionInference, config: GatewayConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
        let upstream = proxy::Upstream::new(&client).map_err(|error| {
            ConfigError::Tls(format!("the base URL is not a valid URI: {error}"))
        })?;
        telemetry::describe();
        Ok(Self {
            inner: Arc::new(Inner {
                slots: Arc::new(Semaphore::new(config.max_in_flight)),
                client,
                config,
                upstream,
                tls,
                prometheus: None,
            }),
        })
    }

    /// Serves `GET /metrics` from this Prometheus recorder's handle (install the recorder
    /// first; without one, `/metrics` is a 404).
    #[must_use]
    pub fn with_prometheus(self, handle: PrometheusHandle) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.prometheus = Some(handle);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The settings.
    pub fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    /// The client every upstream call goes through.
    pub fn client(&self) -> &EvolutionInference {
        &self.inner.client
    }

    /// Whether the listener speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.inner.tls.is_some()
    }

    /// The routes as an axum [`Router`](axum::Router), to serve yourself or nest in a
    /// service of your own (without [`serve`](Self::serve)'s header timeout and drain).
    pub fn router(&self) -> axum::Router {
        router::router(self.clone())
    }

    /// Serves on `listener` until `shutdown` completes, then stops accepting and lets calls
    /// and streams in flight finish for up to the drain timeout.
    ///
    /// # Errors
    ///
    /// Only an I/O error of the listener itself; failed connections are logged.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<Drained> {
        let server = server::Server {
            router: self.router(),
            tls: self.inner.tls.clone(),
            header_read_timeout: self.inner.config.header_read_timeout,
            drain_timeout: self.inner.config.drain_timeout,
            max_streams_per_connection: u32::try_from(self.inner.config.max_in_flight)
                .unwrap_or(u32::MAX),
        };
        server.run(listener, shutdown).await
    }
}
