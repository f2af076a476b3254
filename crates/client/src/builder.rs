//! Configuration of an [`EvolutionInference`] client.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use evolution_fallback::Failback;
use evolution_metrics::{FallbackSide, Metrics};
use evolution_retry::RetryConfig;
#[cfg(feature = "redis")]
use evolution_token::store::{RedisStore, TokenStore};
use evolution_token::{
    Credentials, ENV_API_KEY, ENV_KEY_ID, ENV_REDIS_URL, ENV_SECRET, ENV_TOKEN_URL, TokenManager,
    parse_endpoint_url,
};
use secrecy::{ExposeSecret, SecretString};

use crate::HttpTransport;
use crate::client::EvolutionInference;
use crate::deployment::Deployment;
use crate::params::Params;
use crate::redirect::Retarget;
use crate::stack::{self, EvolutionService, MemberSpec, PoolSpec, StackConfig, Transport};
use crate::stream::StreamLimits;
use crate::{Error, Result};
use evolution_pool::{AllCooling, HealthConfig, RateLimits, Strategy};

/// Environment variable for the API base URL (ending in `/v1`).
pub const ENV_BASE_URL: &str = "EVOLUTION_BASE_URL";
/// Environment variable for the model name.
pub const ENV_MODEL: &str = "EVOLUTION_MODEL";
/// Environment variable for the backup key id.
pub const ENV_BACKUP_KEY_ID: &str = "EVOLUTION_BACKUP_KEY_ID";
/// Environment variable for the backup secret.
pub const ENV_BACKUP_SECRET: &str = "EVOLUTION_BACKUP_SECRET";
/// Environment variable for the pool's configuration file
/// ([`config_file`](EvolutionInferenceBuilder::config_file)).
pub const ENV_CONFIG: &str = "EVOLUTION_CONFIG";

/// Limit for one attempt (the wait for a token and the resends included), unless set (the
/// reference SDK's 60 s).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds an [`EvolutionInference`]. Everything is validated in [`build`](Self::build).
///
/// ```
/// use evolution_client::EvolutionInference;
///
/// let llm = EvolutionInference::builder()
///     .model("your-model")
///     .key_id("your-key-id")
///     .secret("your-secret")
///     .base_url("https://your-api-endpoint.com/v1")
///     .temperature(0.7)
///     .build()?;
/// # drop(llm);
/// # Ok::<(), evolution_client::Error>(())
/// ```
#[must_use]
pub struct EvolutionInferenceBuilder {
    model: Option<String>,
    key_id: Option<String>,
    secret: Option<SecretString>,
    api_key: Option<SecretString>,
    base_url: Option<String>,
    auth_url: Option<String>,
    params: Params,
    request_timeout: Duration,
    total_timeout: Option<Duration>,
    first_chunk_timeout: Option<Duration>,
    stream_idle_timeout: Option<Duration>,
    stream_timeout: Option<Duration>,
    allow_insecure_http: bool,
    http: Option<reqwest::Client>,
    retry: Option<RetryConfig>,
    backup: Option<(String, SecretString)>,
    failback: Failback,
    refresh_buffer: Option<Duration>,
    refresh_ahead: Option<Duration>,
    fetch_timeout: Option<Duration>,
    fetch_attempts: Option<u32>,
    metrics: Option<Metrics>,
    /// A Redis URL; it may hold a password.
    shared_cache: Option<SecretString>,
    deployments: Vec<Deployment>,
    strategy: Strategy,
    health: HealthConfig,
    all_cooling: AllCooling,
    local_fraction: Option<f64>,
    /// Read at the start of the build (`config_file/`).
    pub(crate) config_file: Option<PathBuf>,
}

impl Default for EvolutionInferenceBuilder {
    fn default() -> Self {
        Self {
            model: None,
            key_id: None,
            secret: None,
            api_key: None,
            base_url: None,
            auth_url: None,
            params: Params::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            total_timeout: None,
            first_chunk_timeout: None,
            stream_idle_timeout: None,
            stream_timeout: None,
            allow_insecure_http: false,
            http: None,
            retry: Some(RetryConfig::default()),
            backup: None,
            failback: Failback::default(),
            refresh_buffer: None,
            refresh_ahead: None,
            fetch_timeout: None,
            fetch_attempts: None,
            metrics: None,
            shared_cache: None,
            deployments: Vec::new(),
            strategy: Strategy::default(),
            health: HealthConfig::default(),
            all_cooling: AllCooling::default(),
            local_fraction: None,
            config_file: None,
        }
    }
}

impl EvolutionInferenceBuilder {
    /// A builder with the reference SDK's defaults and nothing else set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder filled from the `EVOLUTION_*` variables (and a `.env` file in the
    /// current directory or above, which never overrides variables already set).
    /// Methods called afterwards override what the environment said.
    pub fn from_env() -> Self {
        // A missing .env file is normal; a malformed one is reported by the build
        // errors below, when a variable it should have set is missing.
        let _ = dotenvy::dotenv();
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut builder = Self::new();
        builder.model = var(ENV_MODEL);
        builder.key_id = var(ENV_KEY_ID);
        builder.secret = var(ENV_SECRET).map(SecretString::from);
        builder.api_key = var(ENV_API_KEY).map(SecretString::from);
        builder.base_url = var(ENV_BASE_URL);
        builder.auth_url = var(ENV_TOKEN_URL);
        builder.shared_cache = var(ENV_REDIS_URL).map(SecretString::from);
        builder.config_file = var(ENV_CONFIG).map(PathBuf::from);
        if let (Some(key_id), Some(secret)) = (var(ENV_BACKUP_KEY_ID), var(ENV_BACKUP_SECRET)) {
            builder.backup = Some((key_id, SecretString::from(secret)));
        }
        builder
    }

    /// The model name. Required (or `EVOLUTION_MODEL`).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// The key id. Required (or `EVOLUTION_KEY_ID`) unless an [`api_key`](Self::api_key) is set.
    pub fn key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = Some(key_id.into());
        self
    }

    /// A static Foundation Models API key (or `EVOLUTION_API_KEY`), instead of
    /// [`key_id`](Self::key_id) and [`secret`](Self::secret): Cloud.ru's API keys go straight
    /// into `Authorization: Bearer`, so no IAM request is ever made and the auth URL is not
    /// used. Retries, the request timeouts and metrics work as with a key id; a key the API
    /// rejects with 401 is resent once, as a refreshed token would be, and the call then fails
    /// with [`Error::Api`] 401. Kept in a [`SecretString`].
    ///
    /// The key is never printed. Logs, metric labels, errors and
    /// [`TokenManager::key_id`] name it `api-key-` followed by the first 8 hex digits of its
    /// SHA-256 (see [`Credentials::api_key`]). Setting both an API key and a key id or
    /// secret is an [`Error::Config`]. The [backup](Self::backup_credentials) is still a key
    /// id and secret.
    ///
    /// ```
    /// use evolution_client::EvolutionInference;
    ///
    /// let llm = EvolutionInference::builder()
    ///     .model("your-model")
    ///     .api_key("your-api-key")
    ///     .base_url("https://your-api-endpoint.com/v1")
    ///     .build()?;
    /// assert!(llm.token_manager().key_id().starts_with("api-key-"));
    /// # Ok::<(), evolution_client::Error>(())
    /// ```
    pub fn api_key(mut self, api_key: impl Into<String>) -> Self {
        self.api_key = Some(SecretString::from(api_key.into()));
        self
    }

    /// The secret. Required (or `EVOLUTION_SECRET`) unless an [`api_key`](Self::api_key) is
    /// set. Kept in a [`SecretString`].
    pub fn secret(mut self, secret: impl Into<String>) -> Self {
        self.secret = Some(SecretString::from(secret.into()));
        self
    }

    /// The API base URL, for example `https://foundation-models.api.cloud.ru/v1`.
    /// Required (or `EVOLUTION_BASE_URL`). A trailing slash is fine.
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = Some(base_url.into());
        self
    }

    /// The IAM token endpoint. Defaults to [`evolution_token::DEFAULT_AUTH_URL`]
    /// (or `EVOLUTION_TOKEN_URL`).
    pub fn auth_url(mut self, auth_url: impl Into<String>) -> Self {
        self.auth_url = Some(auth_url.into());
        self
    }

    /// Maximum tokens to generate, at least 1. Defaults to 512 ([`DEFAULT_MAX_TOKENS`](crate::DEFAULT_MAX_TOKENS)).
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.params.max_tokens = max_tokens;
        self
    }

    /// Sampling temperature, 0 to 2. Defaults to 1.0 ([`DEFAULT_TEMPERATURE`](crate::DEFAULT_TEMPERATURE)).
    pub fn temperature(mut self, temperature: f64) -> Self {
        self.params.temperature = temperature;
        self
    }

    /// Nucleus sampling, 0 to 1. Defaults to 1.0 ([`DEFAULT_TOP_P`](crate::DEFAULT_TOP_P)).
    pub fn top_p(mut self, top_p: f64) -> Self {
        self.params.top_p = top_p;
        self
    }

    /// Frequency penalty, -2 to 2. Defaults to 0.0 ([`DEFAULT_PENALTY`](crate::DEFAULT_PENALTY)).
    pub fn frequency_penalty(mut self, penalty: f64) -> Self {
        self.params.frequency_penalty = penalty;
        self
    }

    /// Presence penalty, -2 to 2. Defaults to 0.0 ([`DEFAULT_PENALTY`](crate::DEFAULT_PENALTY)).
    pub fn presence_penalty(mut self, penalty: f64) -> Self {
        self.params.presence_penalty = penalty;
        self
    }

    /// Stop sequences. Defaults to none (the field is not sent).
    pub fn stop(mut self, stop: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.params.stop = Some(stop.into_iter().map(Into::into).collect());
        self
    }

    /// Number of choices, at least 1. Defaults to 1 ([`DEFAULT_N`](crate::DEFAULT_N)).
    pub fn n(mut self, n: u32) -> Self {
        self.params.n = n;
        self
    }

    /// Limit for one attempt, everything it waits for included: the token (a refresh, the
    /// shared cache's lock), the request until the response head, the resend after a 401
    /// and the resend to the backup key. A wait for a token cut by it ends in
    /// [`TokenError::Deadline`](evolution_token::TokenError::Deadline) (IAM did not
    /// answer), anything else in [`Error::Timeout`]. Reading a non-streamed body gets the
    /// same limit again. Defaults to 60 seconds ([`DEFAULT_REQUEST_TIMEOUT`]).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Limit for a whole call: every attempt and the waits between them (backoff,
    /// `Retry-After`). Defaults to none: the attempts' own limits bound it, and with
    /// every setting at its default a call ends within 6 minutes
    /// ([`DEFAULT_MAX_ATTEMPTS`](evolution_retry::DEFAULT_MAX_ATTEMPTS) attempts of
    /// [`DEFAULT_REQUEST_TIMEOUT`], the 2 waits between them of at most
    /// [`DEFAULT_MAX_RETRY_AFTER`](evolution_retry::DEFAULT_MAX_RETRY_AFTER) each, and
    /// [`DEFAULT_REQUEST_TIMEOUT`] again to read the body: 3 × 60 s + 2 × 60 s + 60 s).
    pub fn total_timeout(mut self, timeout: Duration) -> Self {
        self.total_timeout = Some(timeout);
        self
    }

    /// Limit for a stream's first chunk, from its response head: a model slow to start, or
    /// a server that sends the head and stalls. The caller has been given nothing yet, so
    /// the request is sent again while the retry policy allows (counted as a retry with
    /// reason `first_chunk_timeout`); then [`stream`](crate::EvolutionInference::stream)
    /// fails with [`Error::StreamTimeout`] ([`StreamTimeout::FirstChunk`](crate::StreamTimeout::FirstChunk)).
    /// Defaults to the [`request_timeout`](Self::request_timeout).
    pub fn first_chunk_timeout(mut self, timeout: Duration) -> Self {
        self.first_chunk_timeout = Some(timeout);
        self
    }

    /// Limit for a stall inside a stream: the longest time without data after a chunk. It
    /// ends the stream with [`Error::StreamTimeout`] ([`StreamTimeout::Idle`](crate::StreamTimeout::Idle));
    /// the request is never sent again, since the caller has had part of the answer.
    /// Defaults to the [`request_timeout`](Self::request_timeout).
    pub fn stream_idle_timeout(mut self, timeout: Duration) -> Self {
        self.stream_idle_timeout = Some(timeout);
        self
    }

    /// Limit for a whole stream, from the call's start to its last chunk. It ends the
    /// stream with [`Error::StreamTimeout`] ([`StreamTimeout::Total`](crate::StreamTimeout::Total)).
    /// Defaults to none: a stream that keeps sending may run as long as it sends.
    pub fn stream_timeout(mut self, timeout: Duration) -> Self {
        self.stream_timeout = Some(timeout);
        self
    }

    /// Allows plain `http://` URLs to hosts other than loopback. Tokens and the
    /// secret travel in clear then. Defaults to off: such a base or auth URL fails
    /// [`build`](Self::build) with [`Error::Config`].
    ///
    /// Loopback hosts (`127.0.0.1`, `::1`, `localhost`) need no setting: nothing sent
    /// there leaves the machine, and that is where the emulator, tests and examples run.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// The HTTP client for API and IAM requests (proxy, pool, TLS settings).
    /// Defaults to a new `reqwest::Client` with rustls that follows no redirect and, when
    /// both URLs are `https`, sends nothing over plain http.
    ///
    /// Requests carry the token, and IAM's the secret, so a client of your own **must not
    /// follow redirects**: build it with `.redirect(reqwest::redirect::Policy::none())`
    /// (reqwest follows up to 10 by default, and sends the body again on 307 and 308, to
    /// any host). Whatever the client, the URLs are checked (https, or http to loopback or
    /// with [`allow_insecure_http`](Self::allow_insecure_http)); a 3xx that reaches the
    /// client is an [`Error::Api`] naming its `Location` (from IAM,
    /// [`TokenError::Redirected`](evolution_token::TokenError::Redirected)); a certificate
    /// the client does not trust is [`Error::UntrustedCertificate`] (from IAM,
    /// [`TokenError::UntrustedCertificate`](evolution_token::TokenError::UntrustedCertificate)),
    /// never retried.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// How calls are retried. Defaults to [`RetryConfig::default()`]: 3 attempts,
    /// 1 s × 2ⁿ with full jitter capped at 30 s, `Retry-After` honoured, a retry budget
    /// of 20% extra load shared by every clone of the client (the `DEFAULT_*` constants of
    /// [`evolution_retry`], such as
    /// [`DEFAULT_MAX_ATTEMPTS`](evolution_retry::DEFAULT_MAX_ATTEMPTS)). With
    /// [`total_timeout`](Self::total_timeout) set and no deadline in `config`, the
    /// total timeout becomes the retry deadline.
    pub fn retry(mut self, config: RetryConfig) -> Self {
        self.retry = Some(config);
        self
    }

    /// Turns retries off: one attempt per call (the 401 resend with a fresh token and
    /// the fallback to a backup key still apply).
    pub fn no_retry(mut self) -> Self {
        self.retry = None;
        self
    }

    /// A backup key: when the primary key is rejected (401/403 after a token refresh,
    /// or IAM refusing it), the same request goes to the backup at once and traffic
    /// stays there until failback. Also read from `EVOLUTION_BACKUP_KEY_ID` and
    /// `EVOLUTION_BACKUP_SECRET`. Defaults to none.
    pub fn backup_credentials(
        mut self,
        key_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        self.backup = Some((key_id.into(), SecretString::from(secret.into())));
        self
    }

    /// When traffic returns from the backup key to the primary. Defaults to
    /// [`Failback::After`] 5 minutes
    /// ([`DEFAULT_FAILBACK_INTERVAL`](evolution_fallback::DEFAULT_FAILBACK_INTERVAL));
    /// [`Failback::Never`] is the reference's behaviour.
    pub fn failback(mut self, failback: Failback) -> Self {
        self.failback = failback;
        self
    }

    /// The metrics handle: constant labels such as `client="billing"`, the opt-in
    /// `key_id` label. Series go to whatever `metrics` recorder is installed
    /// (Prometheus, ...), and [`EvolutionInference::stats`] reads the in-process
    /// snapshot. Defaults to [`Metrics::new()`] (no labels).
    ///
    /// ```
    /// use evolution_client::{EvolutionInference, Metrics};
    ///
    /// let metrics = Metrics::builder().label("client", "billing").build().unwrap();
    /// let builder = EvolutionInference::builder().metrics(metrics);
    /// # drop(builder);
    /// ```
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// See [`evolution_token::TokenManagerBuilder::refresh_buffer`]. Defaults to 30 seconds
    /// ([`DEFAULT_REFRESH_BUFFER`](evolution_token::DEFAULT_REFRESH_BUFFER)).
    pub fn refresh_buffer(mut self, buffer: Duration) -> Self {
        self.refresh_buffer = Some(buffer);
        self
    }

    /// See [`evolution_token::TokenManagerBuilder::fetch_timeout`]: the limit for one IAM
    /// request. Defaults to 10 seconds
    /// ([`DEFAULT_FETCH_TIMEOUT`](evolution_token::DEFAULT_FETCH_TIMEOUT)).
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = Some(timeout);
        self
    }

    /// See [`evolution_token::TokenManagerBuilder::fetch_attempts`]: IAM requests per
    /// refresh on transient IAM failures. Defaults to 3
    /// ([`DEFAULT_FETCH_ATTEMPTS`](evolution_token::DEFAULT_FETCH_ATTEMPTS)).
    pub fn fetch_attempts(mut self, attempts: u32) -> Self {
        self.fetch_attempts = Some(attempts);
        self
    }

    /// See [`evolution_token::TokenManagerBuilder::refresh_ahead`]. Defaults to 5 minutes
    /// ([`DEFAULT_REFRESH_AHEAD`](evolution_token::DEFAULT_REFRESH_AHEAD)).
    pub fn refresh_ahead(mut self, ahead: Duration) -> Self {
        self.refresh_ahead = Some(ahead);
        self
    }

    /// Shares IAM tokens with the other replicas of the service through Redis at
    /// `redis_url` (`redis://`, `rediss://` for TLS): the fleet makes one IAM request per
    /// token lifetime instead of one per replica, and a replica that starts finds a token
    /// ready. Tokens are stored encrypted under a key derived from the secret; while Redis
    /// is unreachable each replica asks IAM itself (a warning and a metric), and no call
    /// fails because of it. Connects on first use. Also read from `EVOLUTION_REDIS_URL`.
    /// Defaults to none. Needs the `redis` feature.
    ///
    /// ```
    /// use evolution_client::EvolutionInference;
    ///
    /// let llm = EvolutionInference::builder()
    ///     .model("your-model")
    ///     .key_id("your-key-id")
    ///     .secret("your-secret")
    ///     .base_url("https://your-api-endpoint.com/v1")
    ///     .shared_cache("redis://cache.internal:6379/0")
    ///     .build()?;
    /// # drop(llm);
    /// # Ok::<(), evolution_client::Error>(())
    /// ```
    #[cfg(feature = "redis")]
    pub fn shared_cache(mut self, redis_url: impl Into<String>) -> Self {
        self.shared_cache = Some(SecretString::from(redis_url.into()));
        self
    }

    /// Adds a deployment to the client's pool of keys. With deployments, the key id, secret
    /// and API key of the builder (and `EVOLUTION_KEY_ID`, `EVOLUTION_SECRET`,
    /// `EVOLUTION_API_KEY`) are not used, nor is a backup key: each call goes to a deployment
    /// chosen by the [`strategy`](Self::strategy), skipping those that are cooling down or at
    /// their rate limits, and fails over to the next at once when a key is rejected, answers
    /// 429 or fails with a server error. See [`Deployment`] and [`evolution_pool`].
    pub fn deployment(mut self, deployment: Deployment) -> Self {
        self.deployments.push(deployment);
        self
    }

    /// How calls are spread over the [deployments](Self::deployment). Defaults to
    /// [`Strategy::Ordered`]: the first healthy one.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// How the deployments cool down and when their circuits open. Defaults to
    /// [`HealthConfig::default()`].
    pub fn pool_health(mut self, health: HealthConfig) -> Self {
        self.health = health;
        self
    }

    /// What a call does when every [deployment](Self::deployment) is cooling down or at its
    /// rate limit: wait for the soonest within the call's deadline (the default, up to
    /// [`DEFAULT_MAX_WAIT`](evolution_pool::DEFAULT_MAX_WAIT)), or fail at once with
    /// [`Error::Unavailable`] naming the soonest ([`AllCooling::Fail`], for a gateway that
    /// answers 503 with `Retry-After` rather than hold its client).
    pub fn when_all_cooling(mut self, all_cooling: AllCooling) -> Self {
        self.all_cooling = all_cooling;
        self
    }

    /// With the deployments' limits shared through Redis (`shared_cache`,
    /// `EVOLUTION_REDIS_URL`, the `redis` feature): the share of each limit a replica keeps
    /// to itself while Redis is unreachable, above 0 and at most 1. Defaults to 0.5
    /// (`evolution_pool::limit::DEFAULT_LOCAL_FRACTION`): set it
    /// to 1 / the number of replicas to stay under the key's limit through an outage. Also
    /// `local_fraction` in a pool file.
    pub fn rate_limit_local_fraction(mut self, fraction: f64) -> Self {
        self.local_fraction = Some(fraction);
        self
    }

    /// Validates everything and builds the client. No request is made.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the setting to fix.
    pub fn build(self) -> Result<EvolutionInference> {
        let parts = self.assemble()?;
        let built = stack::build(
            HttpTransport::new(parts.http),
            &parts.tokens,
            parts.backup.as_ref(),
            parts.pool.as_ref(),
            &parts.config,
        )
        .map_err(pool_error)?;
        let deployments = parts.pool.as_ref().map(PoolSpec::keys).unwrap_or_default();
        EvolutionInference::new(
            built,
            &parts.base,
            parts.params,
            parts.tokens,
            parts.backup,
            deployments,
            parts.config,
        )
    }

    /// The client's whole stack (metrics, timeouts, retry, fallback, auth, per attempt)
    /// over `transport` instead of `reqwest`, as one tower service: for an HTTP client of
    /// your own, or a test double. Requests go to the URIs you give them; tokens are still
    /// fetched with `reqwest` (or the [`http_client`](Self::http_client) you set).
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use bytes::Bytes;
    /// use evolution_client::{Body, EvolutionInference};
    /// use http_body_util::{BodyExt, Full};
    /// use tower::service_fn;
    ///
    /// // A transport that answers every request itself.
    /// let transport = service_fn(|_request: http::Request<Bytes>| async {
    ///     let body: Body = Full::new(Bytes::from_static(b"{}"))
    ///         .map_err(|never: Infallible| match never {})
    ///         .boxed();
    ///     Ok::<_, evolution_client::token::BoxError>(http::Response::new(body))
    /// });
    /// let service = EvolutionInference::builder()
    ///     .model("your-model")
    ///     .key_id("your-key-id")
    ///     .secret("your-secret")
    ///     .base_url("https://your-api-endpoint.com/v1")
    ///     .build_service_over(transport)?;
    /// # drop(service);
    /// # Ok::<(), evolution_client::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    pub fn build_service_over<T: Transport>(self, transport: T) -> Result<EvolutionService> {
        let parts = self.assemble()?;
        let built = stack::build(
            transport,
            &parts.tokens,
            parts.backup.as_ref(),
            parts.pool.as_ref(),
            &parts.config,
        )
        .map_err(pool_error)?;
        Ok(EvolutionService::new(built.stack))
    }

    /// Validates the configuration and builds everything but the stack.
    fn assemble(mut self) -> Result<Parts> {
        if let Some(path) = self.config_file.take() {
            self = self.apply_config_file(&path)?;
        }
        let pooled = !self.deployments.is_empty();
        // With deployments, the client's model and base URL are the defaults of those that
        // name none; if the client has none, the first deployment's are used.
        let first = self.deployments.first();
        let model = match (self.model.clone(), first.and_then(|d| d.model.clone())) {
            (Some(model), _) if !model.trim().is_empty() => model,
            (_, Some(model)) if pooled => model,
            (model, _) => required(model, "model", ENV_MODEL)?,
        };
        let base_url = match (
            self.base_url.clone(),
            first.and_then(|d| d.base_url.clone()),
        ) {
            (Some(base), _) if !base.trim().is_empty() => base,
            (_, Some(base)) if pooled => base,
            (base, _) => required(base, "base_url", ENV_BASE_URL)?,
        };
        let credentials = match (first, &self.api_key, &self.key_id, &self.secret) {
            // The deployments carry the keys: the single key's settings are not used.
            (Some(first), ..) => first.credentials.clone(),
            (None, Some(api_key), None, None) => {
                Credentials::api_key(api_key.expose_secret().trim())
            }
            (None, Some(_), _, _) => {
                return Err(Error::config(
                    "api_key",
                    format!(
                        "both an API key (.api_key(..) or {ENV_API_KEY}) and a key id or secret (.key_id(..)/.secret(..) or {ENV_KEY_ID}/{ENV_SECRET}) are set: use one of them"
                    ),
                ));
            }
            (None, None, key_id, secret) => {
                let key_id = required(key_id.clone(), "key_id", ENV_KEY_ID)?;
                match secret {
                    Some(secret) if !secret.expose_secret().trim().is_empty() => {
                        Credentials::new(key_id, secret.expose_secret())
                    }
                    _ => return Err(missing("secret", ENV_SECRET)),
                }
            }
        };
        let base = parse_endpoint_url("base URL", &base_url, self.allow_insecure_http)
            .map_err(|message| Error::config("base_url", message))?;
        let mut params = self.params.clone();
        params.model = model.clone();
        params.validate()?;
        if self.request_timeout.is_zero() {
            return Err(Error::config("request_timeout", "must be longer than zero"));
        }
        if self.local_fraction.is_some_and(|f| !(f > 0.0 && f <= 1.0)) {
            return Err(Error::config(
                "rate_limit_local_fraction",
                "must be above 0 and at most 1 (the share of each limit a replica keeps while Redis is unreachable)",
            ));
        }
        for (field, timeout) in [
            ("total_timeout", self.total_timeout),
            ("first_chunk_timeout", self.first_chunk_timeout),
            ("stream_idle_timeout", self.stream_idle_timeout),
            ("stream_timeout", self.stream_timeout),
        ] {
            if timeout.is_some_and(|t| t.is_zero()) {
                return Err(Error::config(field, "must be longer than zero"));
            }
        }
        let http = match self.http {
            Some(http) => http,
            None => {
                // The auth URL is checked by the token manager; here it only decides
                // whether plain http may be used at all. Without an IAM key it is unused.
                let uses_iam = !credentials.is_api_key()
                    || self.backup.is_some()
                    || self.deployments.iter().any(|d| !d.credentials.is_api_key());
                let auth_https = !uses_iam
                    || self.auth_url.as_deref().is_none_or(|url| {
                        url::Url::parse(url.trim()).is_ok_and(|url| url.scheme() == "https")
                    });
                let bases_https = self.deployments.iter().all(|d| {
                    d.base_url.as_deref().is_none_or(|url| {
                        url::Url::parse(url.trim()).is_ok_and(|url| url.scheme() == "https")
                    })
                });
                default_http_client(base.scheme() == "https" && auth_https && bases_https)?
            }
        };
        let metrics = self.metrics.clone().unwrap_or_default();
        // One store (one Redis connection) for the primary and the backup key.
        #[cfg(feature = "redis")]
        let shared_cache: Option<Arc<dyn TokenStore>> = match &self.shared_cache {
            Some(url) => Some(Arc::new(
                RedisStore::new(url.expose_secret())
                    .map_err(|error| Error::config("shared_cache", error.to_string()))?,
            )),
            None => None,
        };
        #[cfg(not(feature = "redis"))]
        if self.shared_cache.is_some() {
            tracing::warn!(
                "{ENV_REDIS_URL} is set but evolution-client was built without its `redis` feature: the shared token cache is off"
            );
        }
        let has_backup = self.backup.is_some();
        let token_manager = |credentials: Credentials,
                             field: &'static str,
                             deployment: Option<&str>| {
            // A static key makes no IAM request: an auth URL it would never use must not
            // fail its build. A valid one is still kept, for a later `set_credentials`.
            let uses_iam = !credentials.is_api_key()
                || self.auth_url.as_deref().is_some_and(|url| {
                    parse_endpoint_url("auth URL", url, self.allow_insecure_http).is_ok()
                });
            let mut tokens = TokenManager::builder(credentials)
                .http_client(http.clone())
                .allow_insecure_http(self.allow_insecure_http);
            // With a backup key, each key's token series carry its side: one shared
            // `evolution_token_expires_in_seconds` would read whichever key reported last.
            // So does each deployment of a pool, with its name.
            tokens = match (deployment, has_backup, field) {
                (Some(name), ..) => tokens.observer(metrics.deployment_token_observer(name)),
                (None, false, _) => tokens.observer(metrics.clone()),
                (None, true, "backup_credentials") => {
                    tokens.observer(metrics.token_observer(FallbackSide::Backup))
                }
                (None, true, _) => tokens.observer(metrics.token_observer(FallbackSide::Primary)),
            };
            if let Some(auth_url) = &self.auth_url
                && uses_iam
            {
                tokens = tokens.auth_url(auth_url);
            }
            if let Some(buffer) = self.refresh_buffer {
                tokens = tokens.refresh_buffer(buffer);
            }
            if let Some(ahead) = self.refresh_ahead {
                tokens = tokens.refresh_ahead(ahead);
            }
            if let Some(timeout) = self.fetch_timeout {
                tokens = tokens.fetch_timeout(timeout);
            }
            if let Some(attempts) = self.fetch_attempts {
                tokens = tokens.fetch_attempts(attempts);
            }
            #[cfg(feature = "redis")]
            if let Some(store) = &shared_cache {
                tokens = tokens.shared_cache(store.clone());
            }
            // The token settings are named like this builder's methods.
            tokens
                .build()
                .map_err(|error| Error::from_token(error, Some(field)))
        };
        let (tokens, pool) = if pooled {
            #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
            let mut spec = pool_spec(
                &self.deployments,
                self.allow_insecure_http,
                (self.strategy, self.health, self.all_cooling),
                (base.as_str(), &model),
                |credentials, name| token_manager(credentials, "deployment", Some(name)),
            )?;
            // The replicas of a service share each deployment's limits through the Redis
            // of the shared token cache.
            #[cfg(feature = "redis")]
            if let Some(url) = &self.shared_cache
                && spec.members.iter().any(|m| m.limits.is_some())
            {
                let mut shared = evolution_pool::SharedLimits::new(url.expose_secret())
                    .map_err(|error| Error::config("shared_cache", error.to_string()))?;
                if let Some(fraction) = self.local_fraction {
                    shared = shared.local_fraction(fraction);
                }
                for member in &mut spec.members {
                    // Named by deployment and key id (never a secret): the replicas of
                    // this service share them, another service's `main` does not.
                    let bucket = format!("{}/{}", member.name, member.tokens.key_id());
                    member.limits = member
                        .limits
                        .take()
                        .map(|limits| limits.shared_as(&shared, &member.name, &bucket));
                }
            }
            (spec.members[0].tokens.clone(), Some(spec))
        } else {
            (token_manager(credentials, "key_id", None)?, None)
        };
        let backup = match &self.backup {
            // A pool has no backup key: add the backup as a deployment instead.
            Some(_) if pooled => {
                return Err(Error::config(
                    "backup_credentials",
                    format!(
                        "a backup key and deployments are both set: with deployments, add the backup key as the last deployment under the `ordered` strategy (unset {ENV_BACKUP_KEY_ID} and {ENV_BACKUP_SECRET})"
                    ),
                ));
            }
            Some((backup_key_id, backup_secret)) => {
                if backup_key_id.trim().is_empty()
                    || backup_secret.expose_secret().trim().is_empty()
                {
                    return Err(missing("backup_credentials", ENV_BACKUP_KEY_ID));
                }
                Some(token_manager(
                    Credentials::new(backup_key_id.as_str(), backup_secret.expose_secret()),
                    "backup_credentials",
                    None,
                )?)
            }
            None => None,
        };
        let retry = match (self.retry, self.total_timeout) {
            (Some(retry), Some(total)) if retry.deadline().is_none() => Some(
                retry
                    .to_builder()
                    .deadline(total)
                    .build()
                    .map_err(|error| Error::config("retry", error.to_string()))?,
            ),
            (retry, _) => retry,
        };
        let config = StackConfig {
            request_timeout: self.request_timeout,
            total_timeout: self.total_timeout,
            stream: StreamLimits {
                first_chunk: self.first_chunk_timeout.unwrap_or(self.request_timeout),
                idle: self.stream_idle_timeout.unwrap_or(self.request_timeout),
                total: self.stream_timeout,
            },
            retry,
            failback: self.failback,
            metrics,
        };
        Ok(Parts {
            http,
            base,
            params,
            tokens,
            backup,
            pool,
            config,
        })
    }
}

/// The deployments, checked, each with its token manager (made by `tokens`); `client` is
/// the client's base URL and model, which deployments without their own use.
fn pool_spec(
    deployments: &[Deployment],
    allow_insecure_http: bool,
    (strategy, health, all_cooling): (Strategy, HealthConfig, AllCooling),
    (client_base, client_model): (&str, &str),
    tokens: impl Fn(Credentials, &str) -> Result<TokenManager>,
) -> Result<PoolSpec> {
    let client_base: Arc<str> = Arc::from(client_base.trim_end_matches('/'));
    let client_model: Arc<str> = Arc::from(client_model);
    let mut members = Vec::with_capacity(deployments.len());
    for deployment in deployments {
        let name = deployment.name.trim();
        let named = |message: String| {
            Error::config("deployment", format!("deployment `{name}`: {message}"))
        };
        if deployment.credentials.key_id().trim().is_empty()
            || deployment
                .credentials
                .secret()
                .expose_secret()
                .trim()
                .is_empty()
        {
            return Err(named(
                "its key id and secret (or API key) must not be empty".into(),
            ));
        }
        let mut retarget = Retarget::default();
        let mut to = Arc::clone(&client_base);
        if let Some(base_url) = &deployment.base_url {
            // Checked before the URL can be quoted in an error: a password must not be.
            if url::Url::parse(base_url.trim())
                .is_ok_and(|url| !url.username().is_empty() || url.password().is_some())
            {
                return Err(named(
                    "base_url: it holds a user name or password; remove them (the deployment's key goes in key_id and secret, or api_key)".into(),
                ));
            }
            let base = parse_endpoint_url("base URL", base_url, allow_insecure_http)
                .map_err(|message| named(format!("base_url: {message}")))?;
            let base: Arc<str> = Arc::from(base.as_str().trim_end_matches('/'));
            if base != client_base {
                to = Arc::clone(&base);
                retarget.base = Some((Arc::clone(&client_base), base));
            }
        }
        if let Some(model) = &deployment.model {
            let model = model.trim();
            if model.is_empty() {
                return Err(named("model: it is empty".into()));
            }
            if model != &*client_model {
                retarget.model = Some((Arc::clone(&client_model), Arc::from(model)));
            }
        }
        let manager =
            tokens(deployment.credentials.clone(), name).map_err(|error| match error {
                Error::Config { message, .. } => named(message),
                other => other,
            })?;
        let limits = (deployment.rpm.is_some() || deployment.tpm.is_some())
            .then(|| RateLimits::new(deployment.rpm, deployment.tpm));
        members.push(MemberSpec {
            name: name.to_owned(),
            tokens: manager,
            retarget,
            base_url: to,
            weight: deployment.weight,
            limits,
        });
    }
    Ok(PoolSpec {
        members,
        strategy,
        health,
        all_cooling,
    })
}

/// The client when the caller gives none: no redirect is followed (requests carry the
/// token, and IAM's the secret), and plain http is refused unless a URL uses it.
fn default_http_client(https_only: bool) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .https_only(https_only)
        .build()
        .map_err(|error| {
            Error::config(
                "http_client",
                format!("cannot create the HTTP client: {error}"),
            )
        })
}

/// A validated configuration, before the stack is built over a transport.
struct Parts {
    http: reqwest::Client,
    base: url::Url,
    params: Params,
    tokens: TokenManager,
    backup: Option<TokenManager>,
    pool: Option<PoolSpec>,
    config: StackConfig,
}

/// A pool the pool's builder refused, as a configuration error.
fn pool_error(error: evolution_pool::BuildError) -> Error {
    Error::config("deployment", error.to_string())
}

fn required(value: Option<String>, field: &'static str, env: &str) -> Result<String> {
    match value {
        Some(value) if !value.trim().is_empty() => Ok(value.trim().to_owned()),
        _ => Err(missing(field, env)),
    }
}

fn missing(field: &'static str, env: &str) -> Error {
    Error::config(
        field,
        format!("it is not set: call .{field}(..) on the builder or set {env}"),
    )
}

impl fmt::Debug for EvolutionInferenceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EvolutionInferenceBuilder")
            .field("model", &self.model)
            .field("key_id", &self.key_id)
            .field("secret", &self.secret.as_ref().map(|_| "[REDACTED]"))
            .field("api_key", &self.api_key.as_ref().map(|_| "[REDACTED]"))
            .field("base_url", &self.base_url)
            .field("auth_url", &self.auth_url)
            .field("params", &self.params)
            .field("request_timeout", &self.request_timeout)
            .field("total_timeout", &self.total_timeout)
            .field("first_chunk_timeout", &self.first_chunk_timeout)
            .field("stream_idle_timeout", &self.stream_idle_timeout)
            .field("stream_timeout", &self.stream_timeout)
            .field("retry", &self.retry)
            .field(
                "backup_key_id",
                &self.backup.as_ref().map(|(key_id, _)| key_id),
            )
            .field("failback", &self.failback)
            .field(
                "shared_cache",
                &self.shared_cache.as_ref().map(|_| "[REDACTED]"),
            )
            .finish_non_exhaustive()
    }
}
