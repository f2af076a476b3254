//! `evolution gateway`: the OpenAI-compatible gateway, configured from flags and the
//! `EVOLUTION_*` variables.

use std::io::Write;
use std::time::Duration;

use evolution_client::metrics::names::histogram_buckets;
use evolution_client::pool::AllCooling;
use evolution_gateway::{
    ENV_GATEWAY_KEYS, Gateway, GatewayConfig, GatewayKeys, TlsFiles, telemetry,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::args::GatewayArgs;
use crate::failure::Failure;
use crate::target::{NO_MODEL, Target};

/// The longest a gateway call waits for a deployment of its pool.
const ALL_COOLING_MAX_WAIT: Duration = Duration::from_secs(1);

pub(crate) async fn run(args: GatewayArgs) -> Result<(), Failure> {
    let config = config(&args)?;
    // Before the client exists, so that its series are registered with the exporter.
    let prometheus = install_prometheus()?;
    let request_timeout = args
        .request_timeout
        .map(|secs| positive_seconds(secs, "--request-timeout"))
        .transpose()?;
    let total_timeout = args
        .total_timeout
        .map(|secs| positive_seconds(secs, "--total-timeout"))
        .transpose()?;
    let target = Target::build_with(&args.target, false, |mut builder, _| {
        if let Some(timeout) = request_timeout {
            builder = builder.request_timeout(timeout);
        }
        if let Some(timeout) = total_timeout {
            builder = builder.total_timeout(timeout);
        }
        if args.upstream_h2c {
            builder = builder.http_client(h2c_client());
        }
        // With a pool, a call waits a moment for a rate limit's next slot; a longer wait
        // (every key cooling down) is answered 503 with Retry-After at once, rather than
        // holding the client's connection.
        builder.when_all_cooling(AllCooling::Wait {
            max: ALL_COOLING_MAX_WAIT,
        })
    })
    .await?;
    let config = GatewayConfig {
        default_model: Some(target.client.model().to_owned()).filter(|model| model != NO_MODEL),
        ..config
    };
    let gateway = Gateway::new(target.client.clone(), config)
        .map_err(|error| Failure::Config(error.to_string()))?
        .with_prometheus(prometheus);
    let listen = gateway.config().listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| Failure::Config(format!("cannot listen on {listen}: {error}")))?;
    let address = listener
        .local_addr()
        .map_err(|error| Failure::Other(format!("cannot read the bound address: {error}")))?;
    let shutdown = shutdown_signal()?;
    let scheme = if gateway.is_tls() { "https" } else { "http" };
    // The first line on stdout, for scripts to wait for; printed before any warning, so it
    // stays first when a script reads both streams as one.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on {scheme}://{address}");
    let _ = stdout.flush();
    drop(stdout);
    warn_about_exposure(&gateway, address);
    tracing::info!(
        upstream = target.client.base_url(),
        keys = gateway.config().keys.len(),
        "gateway ready"
    );
    let drained = gateway
        .serve(listener, shutdown)
        .await
        .map_err(|error| Failure::Other(format!("the gateway's listener failed: {error}")))?;
    if let evolution_gateway::Drained::Cut(open) = drained {
        tracing::warn!(
            open,
            "drain deadline passed: cut the connections still open"
        );
    }
    Ok(())
}

/// A duration flag that must be more than zero.
fn positive_seconds(secs: f64, flag: &str) -> Result<Duration, Failure> {
    match Duration::try_from_secs_f64(secs) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err(Failure::Config(format!(
            "{flag} must be a number of seconds above 0, not {secs}"
        ))),
    }
}

fn config(args: &GatewayArgs) -> Result<GatewayConfig, Failure> {
    let mut keys = match std::env::var(ENV_GATEWAY_KEYS) {
        Ok(list) => GatewayKeys::parse_list(&list),
        Err(_) => Ok(GatewayKeys::none()),
    }
    .map_err(|error| Failure::Config(error.to_string()))?;
    if let Some(path) = &args.keys_file {
        keys.add_file(path)
            .map_err(|error| Failure::Config(error.to_string()))?;
    }
    let seconds = |value: f64, flag: &str| {
        Duration::try_from_secs_f64(value)
            .map_err(|_| Failure::Config(format!("{flag} must be a number of seconds ≥ 0")))
    };
    Ok(GatewayConfig {
        listen: args.listen,
        keys,
        max_body_bytes: args.max_body_bytes,
        max_in_flight: args.max_in_flight,
        drain_timeout: seconds(args.drain_timeout, "--drain-timeout")?,
        header_read_timeout: positive_seconds(args.header_read_timeout, "--header-read-timeout")?,
        default_model: None,
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
    })
}

/// Says, once, who can reach the gateway and whether keys travel in clear.
fn warn_about_exposure(gateway: &Gateway, address: std::net::SocketAddr) {
    if gateway.config().keys.is_empty() {
        tracing::warn!(
            %address,
            "no gateway keys (EVOLUTION_GATEWAY_KEYS, --keys-file): listening on loopback only, and every local caller is accepted"
        );
    } else if !address.ip().is_loopback() && !gateway.is_tls() {
        tracing::warn!(
            %address,
            "listening without TLS on a non-loopback address: gateway keys travel in clear unless a TLS terminator stands in front (--tls-cert, --tls-key)"
        );
    }
}

fn install_prometheus() -> Result<PrometheusHandle, Failure> {
    let mut builder = PrometheusBuilder::new();
    let buckets = histogram_buckets().chain(telemetry::histogram_buckets());
    for (name, buckets) in buckets {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
            .map_err(|error| Failure::Other(format!("metrics: {error}")))?;
    }
    builder
        .install_recorder()
        .map_err(|error| Failure::Other(format!("cannot install the metrics recorder: {error}")))
}

/// A client for an h2c upstream; like the builder's own, it follows no redirect.
fn h2c_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .http2_prior_knowledge()
        .build()
        .unwrap_or_default()
}

/// Completes on SIGTERM or SIGINT. The handlers are installed now, not when the future is
/// first polled: a signal sent right after the listening line must not kill the process.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, Failure> {
    let cannot = |error: std::io::Error| {
        Failure::Other(format!("cannot install the signal handlers: {error}"))
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).map_err(cannot)?;
        let mut interrupt = signal(SignalKind::interrupt()).map_err(cannot)?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => {},
                _ = interrupt.recv() => {},
            }
            tracing::info!("shutdown signal received");
        })
    }
    #[cfg(not(unix))]
    {
        let _ = cannot;
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutdown signal received");
        })
    }
}
