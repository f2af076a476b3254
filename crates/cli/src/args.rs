//! Command-line arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Resilient client for Cloud.ru Evolution inference.
///
/// Reads EVOLUTION_KEY_ID, EVOLUTION_SECRET, EVOLUTION_BASE_URL, EVOLUTION_MODEL and
/// (optionally) EVOLUTION_TOKEN_URL, EVOLUTION_BACKUP_KEY_ID, EVOLUTION_BACKUP_SECRET from
/// the environment and `.env`; or many keys from the file --config (EVOLUTION_CONFIG) names. Add --emulator to any command to run it against an
/// embedded emulator instead, with no account.
#[derive(Debug, Parser)]
#[command(name = "evolution", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Ask a question and print the answer.
    Chat(ChatArgs),
    /// Check the credentials: obtain a token and print its key id, auth URL and expiry (a
    /// static API key, from EVOLUTION_API_KEY, is checked by the API with GET /models and
    /// shown by its label api-key-<8 hex digits>). With --config, every deployment's key.
    Token(TokenArgs),
    /// Load the full client stack and report throughput, latency, refreshes, retries.
    Bench(BenchArgs),
    /// Run the Evolution emulator in the foreground.
    Emulator(evolution_emulator::cli::Args),
    /// Serve an OpenAI-compatible gateway: any OpenAI SDK, pointed at it, calls Evolution
    /// with no token code.
    Gateway(GatewayArgs),
}

/// Where requests go.
#[derive(Debug, Clone, Args)]
pub(crate) struct TargetArgs {
    /// Use an embedded emulator instead of the EVOLUTION_* endpoint.
    #[arg(long)]
    pub(crate) emulator: bool,

    /// Model name (overrides EVOLUTION_MODEL).
    #[arg(long, value_name = "M")]
    pub(crate) model: Option<String>,

    /// A TOML file of deployments (several keys, each with optional base URL, model, rpm,
    /// tpm and weight) and the strategy over them; EVOLUTION_KEY_ID and EVOLUTION_SECRET
    /// are then not needed. See the README's "Many keys".
    #[arg(
        long,
        value_name = "PATH",
        env = "EVOLUTION_CONFIG",
        conflicts_with = "emulator"
    )]
    pub(crate) config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ChatArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,

    /// Print the answer as it is generated.
    #[arg(long)]
    pub(crate) stream: bool,

    /// Maximum tokens to generate.
    #[arg(long, value_name = "N")]
    pub(crate) max_tokens: Option<u32>,

    /// Sampling temperature, 0 to 2.
    #[arg(long, value_name = "T")]
    pub(crate) temperature: Option<f64>,

    /// A system message to send first.
    #[arg(long, value_name = "S")]
    pub(crate) system: Option<String>,

    /// The question (several words are joined with spaces).
    #[arg(required = true, value_name = "PROMPT")]
    pub(crate) prompt: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,

    /// Also print the token itself (it grants access: keep it private). For a static API
    /// key, the "token" is the key itself, valid for up to a year.
    #[arg(long)]
    pub(crate) show_token: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,

    /// Number of calls to make.
    #[arg(long, value_name = "N", conflicts_with = "duration")]
    pub(crate) requests: Option<u64>,

    /// Run for this many seconds instead of a fixed number of calls.
    #[arg(long, value_name = "SECS")]
    pub(crate) duration: Option<f64>,

    /// Calls in flight at once.
    #[arg(long, value_name = "C", default_value_t = 64)]
    pub(crate) concurrency: usize,

    /// The prompt of every call.
    #[arg(long, value_name = "P", default_value = "Привет!")]
    pub(crate) prompt: String,

    /// Print one JSON object on the last line instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,

    /// Address to listen on. Without gateway keys, only a loopback address is allowed.
    #[arg(long, value_name = "ADDR", default_value = evolution_gateway::DEFAULT_LISTEN)]
    pub(crate) listen: SocketAddr,

    /// A file of gateway keys, one per line (adds to EVOLUTION_GATEWAY_KEYS, comma-separated).
    #[arg(long, value_name = "PATH")]
    pub(crate) keys_file: Option<PathBuf>,

    /// Largest request body, in bytes.
    #[arg(long, value_name = "N", default_value_t = evolution_gateway::DEFAULT_MAX_BODY_BYTES)]
    pub(crate) max_body_bytes: usize,

    /// Most requests in flight (open streams count); more are answered 503 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = evolution_gateway::DEFAULT_MAX_IN_FLIGHT)]
    pub(crate) max_in_flight: usize,

    /// After SIGTERM or SIGINT, how long calls and streams in flight may run on.
    #[arg(long, value_name = "SECS", default_value_t = evolution_gateway::DEFAULT_DRAIN_TIMEOUT.as_secs_f64())]
    pub(crate) drain_timeout: f64,

    /// How long a client may take to send a request's headers.
    #[arg(long, value_name = "SECS", default_value_t = evolution_gateway::DEFAULT_HEADER_READ_TIMEOUT.as_secs_f64())]
    pub(crate) header_read_timeout: f64,

    /// Upstream: the limit of each attempt (default: the client's, 60 s).
    #[arg(long, value_name = "SECS")]
    pub(crate) request_timeout: Option<f64>,

    /// Upstream: the limit of a whole call, retries included (default: none).
    #[arg(long, value_name = "SECS")]
    pub(crate) total_timeout: Option<f64>,

    /// Upstream: speak HTTP/2 to an http:// base URL without asking first (h2c prior
    /// knowledge), as an https one negotiates it.
    #[arg(long)]
    pub(crate) upstream_h2c: bool,

    /// PEM certificate chain: serve HTTPS.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
}
