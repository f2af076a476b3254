//! The command line of `evolution-emulator`, reusable as a subcommand of another tool.
//!
//! ```no_run
//! use clap::Parser;
//! use evolution_emulator::cli::{Args, run};
//!
//! # async fn main_() -> std::io::Result<()> {
//! run(Args::parse()).await
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::io::{self, Write};
use std::str::FromStr;
use std::time::Duration;

use crate::config::EmulatorBuilder;
use crate::emulator::Emulator;
use crate::fault::Fault;
use crate::route::Route;

/// Run a local Cloud.ru Evolution emulator (IAM + OpenAI-compatible inference) with fault
/// injection.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "evolution-emulator", version)]
pub struct Args {
    /// Port to listen on, on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,

    /// Lifetime of issued tokens, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub ttl: u64,

    /// An accepted access key (repeatable). Without any, demo-key-id:demo-secret.
    #[arg(long = "key", value_name = "ID:SECRET")]
    pub keys: Vec<KeyArg>,

    /// A static Foundation Models API key accepted as a bearer token (repeatable), with no
    /// IAM exchange.
    #[arg(long = "api-key", value_name = "KEY")]
    pub api_keys: Vec<ApiKeyArg>,

    /// A model id served at /v1/models (repeatable). Without any, demo-model, and chat
    /// requests may name any model; with a list, other models answer 404 model_not_found.
    #[arg(long = "model", value_name = "MODEL")]
    pub models: Vec<String>,

    /// A model id served as a reasoning model (repeatable): its answers carry
    /// reasoning_content.
    #[arg(long = "reasoning-model", value_name = "MODEL")]
    pub reasoning_models: Vec<String>,

    /// A model id served as an embedding model (repeatable), e.g.
    /// ai-sage/Giga-Embeddings-instruct-3B. Joins the --model list.
    #[arg(long = "embedding-model", value_name = "MODEL")]
    pub embedding_models: Vec<String>,

    /// Latency added to every request (chat, embeddings, models, and IAM unless
    /// --iam-latency-ms), in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_ms: u64,

    /// Latency added to the chat and embeddings requests of one key (repeatable): one slow
    /// deployment among several.
    #[arg(long = "key-latency", value_name = "ID:MS")]
    pub key_latencies: Vec<KeyLatencyArg>,

    /// Answer every chat and embeddings request of one key with this error status
    /// (400-599), with `Retry-After: SECS` when given (repeatable): a key that is throttled
    /// (ID:429:30) or failing (ID:503), until the control operation clear_key_fault.
    #[arg(long = "key-fault", value_name = "ID:STATUS[:RETRY_AFTER_SECS]")]
    pub key_faults: Vec<KeyFaultArg>,

    /// Start with this key disabled at IAM (repeatable): its exchanges answer 401
    /// key_disabled until the control operation enable_key.
    #[arg(long = "disable-key", value_name = "ID")]
    pub disabled_keys: Vec<String>,

    /// Latency added to IAM requests instead of --latency-ms, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub iam_latency_ms: Option<u64>,

    /// Probability of a random fault (500/502/503/429/dropped connection) on chat requests.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub fault_probability: f64,

    /// Seed of the random faults.
    #[arg(long, value_name = "SEED", default_value_t = 0)]
    pub fault_seed: u64,

    /// The gap between two events of a streamed chat answer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub stream_interval_ms: u64,

    /// Content pieces (delta.content events) per streamed chat answer. Without it, one per
    /// word of the answer.
    #[arg(long, value_name = "N")]
    pub stream_chunks: Option<usize>,

    /// Also serve HTTP/2 cleartext with prior knowledge (h2c) on the same port, beside
    /// HTTP/1.1.
    #[arg(long)]
    pub http2: bool,

    /// Answer chat requests that name stream_options 400 ("Unrecognized request argument
    /// supplied: stream_options"), as older OpenAI-compatible servers do.
    #[arg(long)]
    pub refuse_stream_options: bool,
}

/// A `--key-latency ID:MS` argument.
#[derive(Clone, Debug)]
pub struct KeyLatencyArg {
    /// The key id.
    pub id: String,
    /// The latency added to its requests.
    pub latency: Duration,
}

impl FromStr for KeyLatencyArg {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let parsed = value
            .rsplit_once(':')
            .filter(|(id, _)| !id.is_empty())
            .and_then(|(id, ms)| Some((id, ms.parse::<u64>().ok()?)));
        match parsed {
            Some((id, ms)) => Ok(KeyLatencyArg {
                id: id.to_owned(),
                latency: Duration::from_millis(ms),
            }),
            None => Err("expected ID:MS, e.g. slow-key:50".to_owned()),
        }
    }
}

/// A `--key-fault ID:STATUS[:RETRY_AFTER_SECS]` argument. The id may itself contain `:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFaultArg {
    /// The key id (or a static API key's label).
    pub id: String,
    /// The status every request of the key is answered, 400 to 599.
    pub status: u16,
    /// The `Retry-After` header's seconds, if any.
    pub retry_after: Option<u64>,
}

impl KeyFaultArg {
    /// The fault this argument gives the key.
    pub fn fault(&self) -> Fault {
        let fault = Fault::status(self.status);
        match self.retry_after {
            Some(secs) => fault.with_header("retry-after", &secs.to_string()),
            None => fault,
        }
    }
}

impl FromStr for KeyFaultArg {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let status = |text: &str| text.parse::<u16>().ok().filter(|s| (400..=599).contains(s));
        let with_retry_after = value.rsplit_once(':').and_then(|(rest, secs)| {
            let (id, code) = rest.rsplit_once(':')?;
            Some((id, status(code)?, Some(secs.parse::<u64>().ok()?)))
        });
        let parsed = with_retry_after
            .or_else(|| {
                let (id, code) = value.rsplit_once(':')?;
                Some((id, status(code)?, None))
            })
            .filter(|(id, _, _)| !id.is_empty());
        match parsed {
            Some((id, status, retry_after)) => Ok(KeyFaultArg {
                id: id.to_owned(),
                status,
                retry_after,
            }),
            None => Err(
                "expected ID:STATUS[:RETRY_AFTER_SECS] with a status from 400 to 599, \
                 e.g. busy-key:429:30 or down-key:503"
                    .to_owned(),
            ),
        }
    }
}

/// A `--key ID:SECRET` argument. The secret is kept out of `Debug`.
#[derive(Clone)]
pub struct KeyArg {
    /// The key id.
    pub id: String,
    /// The secret.
    pub secret: String,
}

impl fmt::Debug for KeyArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyArg")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// An `--api-key KEY` argument, kept out of `Debug`.
#[derive(Clone)]
pub struct ApiKeyArg(pub String);

impl fmt::Debug for ApiKeyArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeyArg([redacted])")
    }
}

impl FromStr for ApiKeyArg {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let value = value.trim();
        if value.is_empty() {
            return Err("expected a non-empty API key".to_owned());
        }
        Ok(ApiKeyArg(value.to_owned()))
    }
}

impl FromStr for KeyArg {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.split_once(':') {
            Some((id, secret)) if !id.is_empty() => Ok(KeyArg {
                id: id.to_owned(),
                secret: secret.to_owned(),
            }),
            _ => Err("expected ID:SECRET".to_owned()),
        }
    }
}

impl Args {
    /// The emulator these arguments describe.
    pub fn builder(&self) -> EmulatorBuilder {
        let mut builder = Emulator::builder()
            .port(self.port)
            .http2(self.http2)
            .stream_interval(Duration::from_millis(self.stream_interval_ms))
            .stream_chunks(self.stream_chunks.unwrap_or(0))
            .refuse_stream_options(self.refuse_stream_options)
            .ttl(Duration::from_secs(self.ttl));
        for key in &self.keys {
            builder = builder.key(&key.id, &key.secret);
        }
        for api_key in &self.api_keys {
            builder = builder.api_key(&api_key.0);
        }
        for model in &self.models {
            builder = builder.model(model);
        }
        for model in &self.reasoning_models {
            builder = builder.reasoning_model(model);
        }
        for model in &self.embedding_models {
            builder = builder.embedding_model(model);
        }
        for key in &self.key_latencies {
            builder = builder.key_latency(&key.id, key.latency);
        }
        for key in &self.key_faults {
            builder = builder.key_fault(&key.id, key.fault());
        }
        for key_id in &self.disabled_keys {
            builder = builder.disable_key(key_id);
        }
        let latency = Duration::from_millis(self.latency_ms);
        let iam_latency = self.iam_latency_ms.map_or(latency, Duration::from_millis);
        builder = builder
            .latency(Route::Iam, iam_latency)
            .latency(Route::Chat, latency)
            .latency(Route::Models, latency)
            .latency(Route::Embeddings, latency);
        if self.fault_probability > 0.0 {
            builder =
                builder.fault_probability(self.fault_probability, self.fault_seed, &[Route::Chat]);
        }
        builder
    }
}

/// Start the emulator, print where it listens, and serve until Ctrl-C or SIGTERM.
///
/// Prints `evolution-emulator listening on http://127.0.0.1:PORT`, then `base_url=...` and
/// `auth_url=...` lines, to stdout.
///
/// # Errors
///
/// If the port cannot be bound, or a `--key-latency`, `--key-fault` or `--disable-key` names
/// no key.
pub async fn run(args: Args) -> io::Result<()> {
    run_until(args, shutdown_signal()).await
}

/// Like [`run`], serving until `shutdown` completes.
///
/// # Errors
///
/// As [`run`].
pub async fn run_until(args: Args, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    let emulator = args.builder().start().await?;
    {
        let mut out = io::stdout().lock();
        // A closed stdout must not stop the server.
        let _ = writeln!(out, "evolution-emulator listening on {}", emulator.origin());
        let _ = writeln!(out, "base_url={}", emulator.base_url());
        let _ = writeln!(out, "auth_url={}", emulator.auth_url());
        let _ = out.flush();
    }
    shutdown.await;
    tracing::info!("shutting down");
    emulator.shutdown().await;
    Ok(())
}

/// Completes on Ctrl-C, or SIGTERM on Unix.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    () = ctrl_c => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => ctrl_c.await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}
