//! The client's spans as OpenTelemetry traces, exported over OTLP (the `otel` feature).
//!
//! Every chat and embeddings call is one `tracing` span named after the OpenTelemetry GenAI
//! conventions (`chat {model}`, kind client, `gen_ai.*`, `server.*`, `error.type`); this
//! module sends those spans, and the application's own, to an OTLP/HTTP endpoint (an
//! OpenTelemetry Collector, Jaeger, Tempo...). No span carries a header, a key or a token.
//!
//! [`init`] is the one-call set-up: it installs a global `tracing` subscriber that exports
//! spans and prints logs, and returns an [`OtelGuard`] that sends the last spans when it is
//! dropped. To compose your own subscriber, build a provider with [`tracer_provider`] and add
//! [`layer`] to it.
//!
//! The exporter reads the standard `OTEL_EXPORTER_OTLP_*` variables (endpoint, headers,
//! timeout) for what [`OtelConfig`] leaves unset, and `OTEL_SERVICE_NAME` /
//! `OTEL_RESOURCE_ATTRIBUTES` for the resource.
//!
//! # Example
//!
//! ```no_run
//! use evolution_client::EvolutionInference;
//! use evolution_client::otel::{self, OtelConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let _otel = otel::init(OtelConfig::new().endpoint("http://localhost:4318").service_name("my-app"))?;
//! let llm = EvolutionInference::from_env()?;
//! llm.invoke("Привет!").await?; // a `chat {model}` span
//! # Ok(()) }
//! // Dropping `_otel` sends what is left.
//! ```
//!
//! # Metrics
//!
//! This feature exports traces only. The client's metrics go through the `metrics` facade,
//! and no maintained bridge from it to OpenTelemetry exists (metrics-rs has none; the
//! third-party ones lag the OpenTelemetry releases or lose the state of a gauge between
//! handles). To get them into an OpenTelemetry pipeline, expose them with
//! `metrics-exporter-prometheus` and let the Collector's `prometheus` receiver scrape them.

use std::fmt;
use std::time::Duration;

use opentelemetry::InstrumentationScope;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer as _};

// The crates of the set-up, at the versions this client is built with, for code that
// configures them further (samplers, propagators, other exporters).
pub use opentelemetry;
pub use opentelemetry_otlp;
pub use opentelemetry_sdk;
pub use tracing_opentelemetry;

/// The path of the traces service under an OTLP/HTTP endpoint.
pub const TRACES_PATH: &str = "/v1/traces";

/// The filter of [`init`]'s subscriber when neither [`OtelConfig::filter`] nor `RUST_LOG`
/// is set: the client's call spans are at INFO, its per-attempt spans at DEBUG.
pub const DEFAULT_FILTER: &str = "info";

/// Targets whose events and spans are never exported by [`init`]'s subscriber: the exporter's
/// own HTTP traffic and the SDK's logs would otherwise be traced, and exported, in a loop.
/// They are still printed by its log layer.
const NOT_EXPORTED: [&str; 6] = [
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
    "opentelemetry_http",
    "hyper",
    "reqwest",
];

/// What [`init`] and [`tracer_provider`] set up. Everything is optional: by default spans go
/// where the `OTEL_EXPORTER_OTLP_*` variables say, or to `http://localhost:4318/v1/traces`.
#[derive(Clone, Default)]
pub struct OtelConfig {
    endpoint: Option<String>,
    service_name: Option<String>,
    timeout: Option<Duration>,
    filter: Option<String>,
    no_log: bool,
}

impl OtelConfig {
    /// A configuration with nothing set (the same as `OtelConfig::default()`).
    pub fn new() -> Self {
        Self::default()
    }

    /// The OTLP/HTTP endpoint, such as `http://localhost:4318` (a Collector's default):
    /// spans are sent to its `/v1/traces`. A URL that already ends with `/v1/traces` is
    /// used as it is. Must be an `http` or `https` URL with a host.
    ///
    /// Defaults to `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as it is), else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (plus `/v1/traces`), else `http://localhost:4318`.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The `service.name` of the exported spans.
    ///
    /// Defaults to `OTEL_SERVICE_NAME`, else the SDK's `unknown_service`.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// How long one export may take, retries included.
    ///
    /// Defaults to `OTEL_EXPORTER_OTLP_TIMEOUT`, else 10 seconds.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The `tracing` filter of [`init`]'s subscriber, in `RUST_LOG` syntax: it chooses the
    /// spans exported and the lines printed.
    ///
    /// Defaults to `RUST_LOG`, else [`DEFAULT_FILTER`].
    pub fn filter(mut self, directives: impl Into<String>) -> Self {
        self.filter = Some(directives.into());
        self
    }

    /// Whether [`init`]'s subscriber also prints logs to standard error, as
    /// `tracing_subscriber::fmt` does. The process has one global subscriber: without this,
    /// `init` leaves nothing to print them.
    ///
    /// Defaults to `true`.
    pub fn log_to_stderr(mut self, enabled: bool) -> Self {
        self.no_log = !enabled;
        self
    }

    /// The traces URL of [`endpoint`](Self::endpoint), checked.
    fn traces_url(&self) -> Result<Option<String>, OtelError> {
        let Some(endpoint) = self.endpoint.as_deref() else {
            return Ok(None);
        };
        let invalid = |reason: &str| OtelError::Endpoint {
            endpoint: redacted(endpoint),
            reason: reason.to_owned(),
        };
        let url = url::Url::parse(endpoint).map_err(|error| invalid(&error.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(
                "OTLP/HTTP needs an http:// or https:// URL, such as http://localhost:4318",
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("the URL has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "credentials in the URL are not sent; pass them as headers (OTEL_EXPORTER_OTLP_HEADERS)",
            ));
        }
        let base = endpoint.trim_end_matches('/');
        Ok(Some(if base.ends_with(TRACES_PATH) {
            base.to_owned()
        } else {
            format!("{base}{TRACES_PATH}")
        }))
    }

    fn directives(&self) -> String {
        self.filter
            .clone()
            .or_else(|| std::env::var(EnvFilter::DEFAULT_ENV).ok())
            .unwrap_or_else(|| DEFAULT_FILTER.to_owned())
    }
}

impl fmt::Debug for OtelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelConfig")
            .field("endpoint", &self.endpoint.as_deref().map(redacted))
            .field("service_name", &self.service_name)
            .field("timeout", &self.timeout)
            .field("filter", &self.filter)
            .field("log_to_stderr", &!self.no_log)
            .finish()
    }
}

/// `endpoint` with the password of its user info (a mistake [`OtelConfig::endpoint`]
/// refuses) hidden, for errors and `Debug`.
fn redacted(endpoint: &str) -> String {
    match url::Url::parse(endpoint) {
        Ok(mut url) if url.password().is_some() => {
            // Cannot fail: the URL has a password, so it can have one.
            let _ = url.set_password(Some("***"));
            url.into()
        }
        _ => endpoint.to_owned(),
    }
}

/// Why OpenTelemetry could not be set up or shut down.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtelError {
    /// [`OtelConfig::endpoint`] is not a usable OTLP/HTTP URL.
    #[error("invalid OTLP endpoint `{endpoint}`: {reason}")]
    Endpoint {
        /// The endpoint as given, a password in it hidden.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// [`OtelConfig::filter`] (or `RUST_LOG`) is not a valid filter.
    #[error("invalid tracing filter `{directives}`: {source}")]
    Filter {
        /// The directives as given.
        directives: String,
        /// The parser's complaint.
        source: tracing_subscriber::filter::ParseError,
    },
    /// The OTLP exporter refused its configuration (often an `OTEL_EXPORTER_OTLP_*` variable).
    #[error("cannot build the OTLP span exporter: {0}")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    /// [`init`] found a global `tracing` subscriber already set: compose [`layer`] into that
    /// one instead.
    #[error(
        "a global tracing subscriber is already set; add evolution_client::otel::layer to it instead"
    )]
    SubscriberAlreadySet(#[source] tracing::subscriber::SetGlobalDefaultError),
    /// Flushing or shutting down the tracer provider failed (an export failed or timed out).
    #[error("OpenTelemetry flush or shutdown failed: {0}")]
    Shutdown(#[source] OTelSdkError),
}

/// A tracer provider exporting spans in batches to the OTLP/HTTP endpoint of `config`.
///
/// Batches are sent from the SDK's own thread with reqwest's blocking client (the same
/// reqwest and rustls as the client's), so no Tokio runtime is needed there. Call
/// [`SdkTracerProvider::shutdown`] before the process exits, or the last batch is lost.
pub fn tracer_provider(config: &OtelConfig) -> Result<SdkTracerProvider, OtelError> {
    let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http();
    if let Some(url) = config.traces_url()? {
        exporter = exporter.with_endpoint(url);
    }
    if let Some(timeout) = config.timeout {
        exporter = exporter.with_timeout(timeout);
    }
    let exporter = exporter.build().map_err(OtelError::Exporter)?;
    let mut resource = Resource::builder();
    if let Some(name) = &config.service_name {
        resource = resource.with_service_name(name.clone());
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// The `tracing` layer that turns spans into OpenTelemetry spans of `provider`, for a
/// subscriber of your own.
///
/// The layer honours the `otel.name`, `otel.kind` and `otel.status_code` fields the client
/// sets, and records each span's source location (`code.*`); it adds no thread or
/// busy/idle-time attributes.
///
/// ```
/// use evolution_client::otel::{self, opentelemetry_sdk::trace::SdkTracerProvider};
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let provider = SdkTracerProvider::builder().build(); // add an exporter
/// let subscriber = tracing_subscriber::registry().with(otel::layer(&provider));
/// let _default = tracing::subscriber::set_default(subscriber);
/// ```
pub fn layer<S>(provider: &SdkTracerProvider) -> OpenTelemetryLayer<S, SdkTracer>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let scope = InstrumentationScope::builder(env!("CARGO_CRATE_NAME"))
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer_with_scope(scope))
        .with_threads(false)
        .with_tracked_inactivity(false)
}

/// Sets up OpenTelemetry for the whole process: a [`tracer_provider`] for `config`, also
/// made OpenTelemetry's global provider (for libraries instrumented with OpenTelemetry
/// directly), and a global `tracing` subscriber with its [`layer`] (and a log layer printing
/// to standard error, unless turned off), both filtered by [`OtelConfig::filter`].
///
/// Fails if the configuration is invalid or a global subscriber is already set. Keep the
/// returned guard for as long as spans should be exported.
pub fn init(config: OtelConfig) -> Result<OtelGuard, OtelError> {
    let directives = config.directives();
    let filter = || {
        EnvFilter::builder()
            .parse(&directives)
            .map_err(|source| OtelError::Filter {
                directives: directives.clone(),
                source,
            })
    };
    let mut export_filter = filter()?;
    for target in NOT_EXPORTED {
        export_filter = export_filter.add_directive(
            format!("{target}=off")
                .parse()
                .expect("a target name and `off` make a directive"),
        );
    }
    let log = match config.no_log {
        true => None,
        false => Some(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter()?),
        ),
    };
    let provider = tracer_provider(&config)?;
    let subscriber = tracing_subscriber::registry()
        .with(layer(&provider).with_filter(export_filter))
        .with(log);
    let guard = OtelGuard { provider };
    tracing::subscriber::set_global_default(subscriber).map_err(OtelError::SubscriberAlreadySet)?;
    opentelemetry::global::set_tracer_provider(guard.provider.clone());
    Ok(guard)
}

/// Keeps [`init`]'s exporter running; dropping it sends the spans not yet sent and shuts the
/// provider down.
///
/// Shutting down blocks the thread until the last batch is sent or the export
/// [timeout](OtelConfig::timeout) passes: drop the guard at the end of `main`, or call
/// [`shutdown`](Self::shutdown) from `tokio::task::spawn_blocking` in async code.
#[derive(Debug)]
#[must_use = "dropping the guard shuts the exporter down"]
pub struct OtelGuard {
    provider: SdkTracerProvider,
}

impl OtelGuard {
    /// The tracer provider, for more tracers or layers.
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }

    /// Sends the spans ended so far, waiting for the export.
    pub fn force_flush(&self) -> Result<(), OtelError> {
        self.provider.force_flush().map_err(OtelError::Shutdown)
    }

    /// Sends the spans not yet sent and shuts the provider down, reporting a failure that
    /// dropping the guard would only log.
    pub fn shutdown(self) -> Result<(), OtelError> {
        // Drop then finds it shut down, which it ignores.
        self.provider.shutdown().map_err(OtelError::Shutdown)
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        match self.provider.shutdown() {
            Ok(()) | Err(OTelSdkError::AlreadyShutdown) => {}
            Err(error) => eprintln!("OpenTelemetry shutdown failed: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(endpoint: &str) -> Result<Option<String>, OtelError> {
        OtelConfig::new().endpoint(endpoint).traces_url()
    }

    #[test]
    fn the_endpoint_is_a_base_url_and_gets_the_traces_path() {
        let traces = |endpoint| url(endpoint).unwrap().unwrap();
        assert_eq!(
            traces("http://localhost:4318"),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(
            traces("https://otel.example:4318/"),
            "https://otel.example:4318/v1/traces"
        );
        assert_eq!(
            traces("http://collector/prefix"),
            "http://collector/prefix/v1/traces"
        );
        assert_eq!(
            traces("http://collector:4318/v1/traces"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(OtelConfig::new().traces_url().unwrap(), None);
    }

    #[test]
    fn a_bad_endpoint_is_named_with_what_is_wrong() {
        for (endpoint, reason) in [
            (
                "localhost:4318",
                "OTLP/HTTP needs an http:// or https:// URL",
            ),
            (
                "grpc://localhost:4317",
                "OTLP/HTTP needs an http:// or https:// URL",
            ),
            ("http://", "empty host"),
            ("not a url", "relative URL without a base"),
        ] {
            let error = url(endpoint).unwrap_err();
            let OtelError::Endpoint {
                endpoint: named, ..
            } = &error
            else {
                panic!("{endpoint}: {error:?}");
            };
            assert_eq!(named, endpoint);
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("invalid OTLP endpoint `{endpoint}`: "))
                    && message.contains(reason),
                "{message}"
            );
        }
        // A password is refused, and shown nowhere.
        let config = OtelConfig::new().endpoint("https://user:hunter2@otel.example:4318");
        let error = config.traces_url().unwrap_err();
        for shown in [
            error.to_string(),
            format!("{error:?}"),
            format!("{config:?}"),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("user:***@otel.example"), "{shown}");
        }
        assert!(
            error
                .to_string()
                .contains("credentials in the URL are not sent")
        );

        // `tracer_provider` checks before it builds anything.
        let error = tracer_provider(&OtelConfig::new().endpoint("localhost:4318")).unwrap_err();
        assert!(matches!(error, OtelError::Endpoint { .. }), "{error:?}");
    }

    #[test]
    fn a_bad_filter_is_refused_before_anything_is_installed() {
        let error = init(OtelConfig::new().filter("evolution_client=loud")).unwrap_err();
        let OtelError::Filter { directives, .. } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(directives, "evolution_client=loud");
    }
}
