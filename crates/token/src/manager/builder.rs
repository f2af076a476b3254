//! Configuration of a [`TokenManager`].

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::time::Duration;

use super::schedule::Schedule;
use super::{Shared, TokenManager};
use crate::event::Observers;
use crate::fetch::IamClient;
#[cfg(feature = "shared-cache")]
use crate::store::TokenStore;
use crate::{Credentials, TokenError, TokenObserver};

/// Cloud.ru's IAM token endpoint.
pub const DEFAULT_AUTH_URL: &str = "https://iam.api.cloud.ru/api/v1/auth/token";
/// Environment variable read by [`TokenManagerBuilder::from_env`] for the auth URL.
pub const ENV_TOKEN_URL: &str = "EVOLUTION_TOKEN_URL";
/// A token this close to expiry is not handed out: callers wait for a new one (the reference's 30 s).
pub const DEFAULT_REFRESH_BUFFER: Duration = Duration::from_secs(30);
/// Background refresh starts between this and half of it (plus the buffer) before expiry.
pub const DEFAULT_REFRESH_AHEAD: Duration = Duration::from_secs(5 * 60);
/// Limit for one IAM request.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest [`fetch_timeout`](TokenManagerBuilder::fetch_timeout) accepted. A token lives
/// an hour: a longer wait for one holds callers without making the token any more useful.
pub const MAX_FETCH_TIMEOUT: Duration = Duration::from_secs(3600);
/// The longest `Retry-After` of IAM (on 429/5xx) a token request waits before its next
/// attempt. IAM asking for more ends the refresh at once with
/// [`TokenError::Throttled`], carrying the wait, rather than asking again too early.
pub const MAX_FETCH_RETRY_AFTER: Duration = Duration::from_secs(10);
/// The longest [`shared_cache_lock_ttl`](TokenManagerBuilder::shared_cache_lock_ttl)
/// accepted: the longest token lifetime this crate accepts
/// ([`MAX_TOKEN_LIFETIME`](crate::MAX_TOKEN_LIFETIME)), which no refresh lock needs to outlive.
#[cfg(feature = "shared-cache")]
pub const MAX_SHARED_CACHE_LOCK_TTL: Duration = crate::MAX_TOKEN_LIFETIME;
/// IAM requests per refresh when IAM answers 408/429/5xx or cannot be reached.
pub const DEFAULT_FETCH_ATTEMPTS: u32 = 3;

const FETCH_BACKOFF_BASE: Duration = Duration::from_millis(200);
const FETCH_BACKOFF_CAP: Duration = Duration::from_secs(2);
const MAX_FETCH_ATTEMPTS: u32 = 10;
/// Added to the lock holder's worst case: scheduling delays, and the replicas' clocks
/// running at slightly different rates from the store's.
#[cfg(feature = "shared-cache")]
const LOCK_TTL_MARGIN: Duration = Duration::from_secs(1);

/// Builds a [`TokenManager`]; every setting has a documented default.
///
/// ```
/// use std::time::Duration;
/// use evolution_token::{Credentials, TokenManager};
///
/// let tokens = TokenManager::builder(Credentials::new("key-id", "secret"))
///     .auth_url("https://iam.api.cloud.ru/api/v1/auth/token")
///     .refresh_buffer(Duration::from_secs(30))
///     .refresh_ahead(Duration::from_secs(300))
///     .fetch_timeout(Duration::from_secs(5))
///     .build()?;
/// # Ok::<(), evolution_token::TokenError>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct TokenManagerBuilder {
    credentials: Credentials,
    auth_url: String,
    refresh_buffer: Duration,
    refresh_ahead: Duration,
    fetch_timeout: Duration,
    fetch_attempts: u32,
    allow_insecure_http: bool,
    http: Option<reqwest::Client>,
    observers: Observers,
    #[cfg(feature = "shared-cache")]
    shared_cache: SharedCacheConfig,
}

#[cfg(feature = "shared-cache")]
#[derive(Debug)]
struct SharedCacheConfig {
    store: Option<Arc<dyn TokenStore>>,
    lock_ttl: Option<Duration>,
    timeout: Duration,
    /// A store that could not be made (a bad Redis URL), reported by `build`.
    error: Option<String>,
}

impl TokenManagerBuilder {
    pub(crate) fn new(credentials: Credentials) -> Self {
        Self {
            credentials,
            auth_url: DEFAULT_AUTH_URL.to_owned(),
            refresh_buffer: DEFAULT_REFRESH_BUFFER,
            refresh_ahead: DEFAULT_REFRESH_AHEAD,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            fetch_attempts: DEFAULT_FETCH_ATTEMPTS,
            allow_insecure_http: false,
            http: None,
            observers: Observers::default(),
            #[cfg(feature = "shared-cache")]
            shared_cache: SharedCacheConfig {
                store: None,
                lock_ttl: None,
                timeout: crate::store::DEFAULT_STORE_TIMEOUT,
                error: None,
            },
        }
    }

    /// A builder for `EVOLUTION_API_KEY`, or else `EVOLUTION_KEY_ID` / `EVOLUTION_SECRET`
    /// (see [`Credentials::from_env`]), with the auth URL from `EVOLUTION_TOKEN_URL` when it
    /// is set and a key id is used (a static API key never asks IAM), and, with the `redis`
    /// feature, the shared cache at `EVOLUTION_REDIS_URL` when it is set.
    ///
    /// # Errors
    ///
    /// [`TokenError::InvalidConfiguration`] naming the variable to set or fix.
    pub fn from_env() -> Result<Self, TokenError> {
        let credentials = Credentials::from_env()?;
        let uses_iam = !credentials.is_api_key();
        let builder = Self::new(credentials);
        let builder = match std::env::var(ENV_TOKEN_URL) {
            Ok(url) if uses_iam && !url.trim().is_empty() => builder.auth_url(url.trim()),
            _ => builder,
        };
        #[cfg(feature = "redis")]
        let builder = match std::env::var(crate::store::ENV_REDIS_URL) {
            Ok(url) if !url.trim().is_empty() => builder.shared_cache_redis(url.trim()),
            _ => builder,
        };
        Ok(builder)
    }

    /// The IAM token endpoint. Defaults to [`DEFAULT_AUTH_URL`].
    pub fn auth_url(mut self, url: impl Into<String>) -> Self {
        self.auth_url = url.into();
        self
    }

    /// How close to expiry a token stops being handed out. Defaults to 30 seconds.
    pub fn refresh_buffer(mut self, buffer: Duration) -> Self {
        self.refresh_buffer = buffer;
        self
    }

    /// How long before expiry a background refresh may start; must not be shorter than
    /// the buffer (equal turns background refresh off, as in the reference SDK).
    /// Defaults to 5 minutes.
    pub fn refresh_ahead(mut self, ahead: Duration) -> Self {
        self.refresh_ahead = ahead;
        self
    }

    /// Limit for one IAM request, at most [`MAX_FETCH_TIMEOUT`] (an hour). Defaults to
    /// 10 seconds.
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// IAM requests per refresh when IAM answers 408/429/5xx, times out or cannot be
    /// reached (1 to 10). 401 and 403 are never retried, nor are redirects and untrusted
    /// certificates. Between attempts the fetch waits a jittered 200 ms × 2ⁿ (at most 2 s),
    /// or IAM's `Retry-After` when longer (up to [`MAX_FETCH_RETRY_AFTER`]). Defaults to 3.
    pub fn fetch_attempts(mut self, attempts: u32) -> Self {
        self.fetch_attempts = attempts;
        self
    }

    /// Allows a plain `http://` auth URL to a host other than loopback. The secret
    /// travels in clear then. Defaults to off: such a URL fails [`build`](Self::build)
    /// with [`TokenError::InvalidConfiguration`] of `auth_url`.
    ///
    /// Loopback hosts (`127.0.0.1`, `::1`, `localhost`) need no setting: nothing sent
    /// there leaves the machine, and that is where the emulator, tests and examples run.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// The HTTP client for IAM requests (to share a connection pool or set a proxy).
    /// Defaults to a new `reqwest::Client` with rustls that follows no redirect and, for
    /// an `https` auth URL, sends nothing over plain http.
    ///
    /// The token request carries the secret, so a client of your own **must not follow
    /// redirects**: build it with `.redirect(reqwest::redirect::Policy::none())`. reqwest
    /// follows up to 10 by default and sends the body again on 307 and 308, to any host.
    /// Whatever the client, the auth URL is checked (https, or http to loopback or with
    /// [`allow_insecure_http`](Self::allow_insecure_http)), a 3xx that reaches the manager
    /// is [`TokenError::Redirected`], and a certificate the client does not trust is
    /// [`TokenError::UntrustedCertificate`] without a retry.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Adds an observer of [`TokenEvent`](crate::TokenEvent)s (metrics, logs).
    pub fn observer(mut self, observer: impl TokenObserver) -> Self {
        self.observers.push(Arc::new(observer));
        self
    }

    /// Adds an observer already behind an `Arc`.
    pub fn shared_observer(mut self, observer: Arc<dyn TokenObserver>) -> Self {
        self.observers.push(observer);
        self
    }

    /// Shares tokens with the other replicas through `store`: a refresh first looks there,
    /// and one replica at a time exchanges the key with IAM for all of them. See
    /// [`store`](crate::store). Defaults to none (each manager asks IAM itself).
    ///
    /// Needs the `shared-cache` feature.
    #[cfg(feature = "shared-cache")]
    pub fn shared_cache(mut self, store: Arc<dyn TokenStore>) -> Self {
        self.shared_cache.store = Some(store);
        self.shared_cache.error = None;
        self
    }

    /// Shares tokens with the other replicas through Redis at `url` (`redis://`,
    /// `rediss://` for TLS, `redis+unix://`): [`shared_cache`](Self::shared_cache) with a
    /// [`RedisStore`](crate::store::RedisStore). The connection is made on first use; an
    /// invalid URL fails [`build`](Self::build). Also read from `EVOLUTION_REDIS_URL` by
    /// [`from_env`](Self::from_env).
    ///
    /// Needs the `redis` feature.
    #[cfg(feature = "redis")]
    pub fn shared_cache_redis(mut self, url: impl AsRef<str>) -> Self {
        match crate::store::RedisStore::new(url.as_ref()) {
            Ok(store) => {
                self.shared_cache.store = Some(Arc::new(store));
                self.shared_cache.error = None;
            }
            Err(error) => self.shared_cache.error = Some(error.to_string()),
        }
        self
    }

    /// How long a replica holds the shared cache's refresh lock at most (1 ms to
    /// [`MAX_SHARED_CACHE_LOCK_TTL`]); the others wait that long for its token before one of
    /// them takes over.
    ///
    /// Defaults to the holder's worst case, so that a slow holder is never taken over
    /// (which would ask IAM twice): three store operations at the store timeout (the lock,
    /// a second look, the save), plus the longest IAM exchange (`fetch_timeout` ×
    /// `fetch_attempts`, plus between attempts the longer of the backoff and
    /// [`MAX_FETCH_RETRY_AFTER`]), plus 1 s. With the default settings:
    /// 3 × 1 s + 3 × 10 s + 2 × 10 s + 1 s = 54 s.
    #[cfg(feature = "shared-cache")]
    pub fn shared_cache_lock_ttl(mut self, ttl: Duration) -> Self {
        self.shared_cache.lock_ttl = Some(ttl);
        self
    }

    /// Limit for one operation on the shared cache; past it the refresh goes to IAM
    /// directly. Defaults to 1 second.
    #[cfg(feature = "shared-cache")]
    pub fn shared_cache_timeout(mut self, timeout: Duration) -> Self {
        self.shared_cache.timeout = timeout;
        self
    }

    /// Validates the configuration and builds the manager. No IAM request is made
    /// until the first token is needed.
    ///
    /// # Errors
    ///
    /// [`TokenError::InvalidConfiguration`] saying which setting to fix.
    pub fn build(self) -> Result<TokenManager, TokenError> {
        self.credentials.validate()?;
        let url = parse_auth_url(&self.auth_url, self.allow_insecure_http)?;
        if self.refresh_ahead < self.refresh_buffer {
            return Err(TokenError::config(
                "refresh_ahead",
                format!(
                    "refresh_ahead ({:?}) is shorter than refresh_buffer ({:?}): it must be at least as long",
                    self.refresh_ahead, self.refresh_buffer
                ),
            ));
        }
        if self.fetch_timeout.is_zero() {
            return Err(TokenError::config(
                "fetch_timeout",
                "fetch_timeout must be longer than zero",
            ));
        }
        if self.fetch_timeout > MAX_FETCH_TIMEOUT {
            return Err(TokenError::config(
                "fetch_timeout",
                format!(
                    "fetch_timeout is {:?}: it must be at most {MAX_FETCH_TIMEOUT:?} (a token lives an hour)",
                    self.fetch_timeout
                ),
            ));
        }
        if !(1..=MAX_FETCH_ATTEMPTS).contains(&self.fetch_attempts) {
            return Err(TokenError::config(
                "fetch_attempts",
                format!(
                    "fetch_attempts is {}: it must be between 1 and {MAX_FETCH_ATTEMPTS}",
                    self.fetch_attempts
                ),
            ));
        }
        let http = match self.http {
            Some(http) => http,
            None => default_http_client(&url)?,
        };
        let iam = IamClient {
            http,
            auth_url: Arc::from(url.as_str()),
            url,
            timeout: self.fetch_timeout,
            attempts: self.fetch_attempts,
            backoff_base: FETCH_BACKOFF_BASE,
            backoff_cap: FETCH_BACKOFF_CAP,
            max_retry_after: MAX_FETCH_RETRY_AFTER,
        };
        #[cfg(feature = "shared-cache")]
        let shared_cache = self.shared_cache.build(&iam)?;
        Ok(TokenManager {
            shared: Arc::new(Shared {
                iam,
                schedule: Schedule {
                    buffer: self.refresh_buffer,
                    ahead: self.refresh_ahead,
                },
                credentials: ArcSwap::from_pointee(self.credentials),
                cache: ArcSwapOption::empty(),
                refreshing: AtomicBool::new(false),
                backoff: super::backoff::Backoff::new(),
                next_refresh_id: AtomicU64::new(1),
                refresh: Mutex::default(),
                observers: self.observers,
                #[cfg(feature = "shared-cache")]
                shared_cache,
            }),
        })
    }
}

#[cfg(feature = "shared-cache")]
impl SharedCacheConfig {
    fn build(self, iam: &IamClient) -> Result<Option<crate::store::SharedCache>, TokenError> {
        if let Some(error) = self.error {
            return Err(TokenError::config("shared_cache", error));
        }
        let Some(store) = self.store else {
            return Ok(None);
        };
        if self.timeout.is_zero() {
            return Err(TokenError::config(
                "shared_cache_timeout",
                "shared_cache_timeout must be longer than zero",
            ));
        }
        let lock_ttl = match self.lock_ttl {
            Some(ttl) if ttl < Duration::from_millis(1) => {
                return Err(TokenError::config(
                    "shared_cache_lock_ttl",
                    "shared_cache_lock_ttl must be at least 1 ms",
                ));
            }
            Some(ttl) if ttl > MAX_SHARED_CACHE_LOCK_TTL => {
                return Err(TokenError::config(
                    "shared_cache_lock_ttl",
                    format!(
                        "shared_cache_lock_ttl is {ttl:?}: it must be at most {MAX_SHARED_CACHE_LOCK_TTL:?}, the longest token lifetime"
                    ),
                ));
            }
            Some(ttl) => ttl,
            None => default_lock_ttl(iam, self.timeout),
        };
        Ok(Some(crate::store::SharedCache::new(
            store,
            lock_ttl,
            self.timeout,
        )))
    }
}

/// The lock holder's worst case: the answer to its lock may come back a whole store
/// timeout after the store set the lock; then a second look, the IAM exchange and the
/// save, the last landing as late as the store timeout allows. Capped at the longest TTL
/// accepted, which a huge store timeout would otherwise exceed.
#[cfg(feature = "shared-cache")]
fn default_lock_ttl(iam: &IamClient, store_timeout: Duration) -> Duration {
    store_timeout
        .saturating_mul(3)
        .saturating_add(iam.longest())
        .saturating_add(LOCK_TTL_MARGIN)
        .min(MAX_SHARED_CACHE_LOCK_TTL)
}

/// The IAM client when the caller gives none: no redirect is followed (the request
/// carries the secret), and an https auth URL never falls back to plain http.
fn default_http_client(url: &reqwest::Url) -> Result<reqwest::Client, TokenError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .https_only(url.scheme() == "https")
        .build()
        .map_err(|error| {
            TokenError::config(
                "http_client",
                format!("cannot create the HTTP client for IAM: {error}"),
            )
        })
}

/// Parses an endpoint URL that will carry a secret or a token, and checks it:
/// `https` with a host; plain `http` only to a loopback host unless
/// `allow_insecure_http`. `what` names the setting in the error message
/// ("auth URL", "base URL").
///
/// ```
/// use evolution_token::parse_endpoint_url;
///
/// assert!(parse_endpoint_url("base URL", "https://foundation-models.api.cloud.ru/v1", false).is_ok());
/// assert!(parse_endpoint_url("base URL", "http://127.0.0.1:8080/v1", false).is_ok());
/// let error = parse_endpoint_url("base URL", "http://example.com/v1", false).unwrap_err();
/// assert!(error.contains("plain http"));
/// ```
///
/// # Errors
///
/// A sentence saying what is wrong with the URL and what to use instead.
pub fn parse_endpoint_url(
    what: &str,
    raw: &str,
    allow_insecure_http: bool,
) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(raw.trim())
        .map_err(|error| format!("{what} `{raw}` is not a valid URL ({error})"))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure_http || is_loopback(&url) => {}
        "http" => {
            return Err(format!(
                "{what} `{url}` is plain http to a non-loopback host, so credentials would travel in clear: use https, or allow_insecure_http(true) if you mean it"
            ));
        }
        other => return Err(format!("{what} `{url}` has scheme `{other}`: use https")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{what} `{raw}` has no host"));
    }
    Ok(url)
}

fn parse_auth_url(raw: &str, allow_insecure_http: bool) -> Result<reqwest::Url, TokenError> {
    parse_endpoint_url("auth URL", raw, allow_insecure_http).map_err(|message| {
        TokenError::config(
            "auth_url",
            format!("{message}; the Cloud.ru default is {DEFAULT_AUTH_URL}"),
        )
    })
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(all(test, feature = "shared-cache"))]
mod tests {
    use super::*;

    fn iam(timeout: Duration, attempts: u32) -> IamClient {
        let url = reqwest::Url::parse(DEFAULT_AUTH_URL).unwrap();
        IamClient {
            http: reqwest::Client::new(),
            auth_url: Arc::from(url.as_str()),
            url,
            timeout,
            attempts,
            backoff_base: FETCH_BACKOFF_BASE,
            backoff_cap: FETCH_BACKOFF_CAP,
            max_retry_after: MAX_FETCH_RETRY_AFTER,
        }
    }

    /// The default lock TTL covers the holder's worst case with the default settings,
    /// each part of it counted from the setting it comes from.
    #[test]
    fn default_lock_ttl_covers_the_holders_worst_case() {
        let store = crate::store::DEFAULT_STORE_TIMEOUT;
        let attempts = DEFAULT_FETCH_ATTEMPTS;
        let waits = attempts - 1;
        // Between attempts: the backoff (at most 2 s) or IAM's Retry-After, the longer.
        let pause = FETCH_BACKOFF_CAP.max(MAX_FETCH_RETRY_AFTER);
        let worst = store // the lock's answer
            + store // a second look
            + DEFAULT_FETCH_TIMEOUT * attempts
            + pause * waits
            + store; // the save
        let ttl = default_lock_ttl(&iam(DEFAULT_FETCH_TIMEOUT, attempts), store);
        assert!(ttl > worst, "{ttl:?} <= {worst:?}");
        assert_eq!(ttl, Duration::from_secs(54), "the figure the docs state");
    }

    #[test]
    fn longest_fetch_counts_every_attempt_and_pause() {
        assert_eq!(
            iam(Duration::from_secs(1), 1).longest(),
            Duration::from_secs(1)
        );
        // Retry-After's 10 s outlasts every backoff (200 ms doubling, capped at 2 s).
        assert_eq!(
            iam(Duration::from_secs(1), 10).longest(),
            Duration::from_secs(10 + 9 * 10)
        );
        let mut short = iam(Duration::from_secs(1), 10);
        short.max_retry_after = Duration::ZERO;
        assert_eq!(
            short.longest(),
            Duration::from_millis(10_000 + 200 + 400 + 800 + 1600 + 5 * 2000)
        );
    }

    #[test]
    fn huge_settings_saturate_into_the_largest_ttl() {
        let ttl = default_lock_ttl(&iam(MAX_FETCH_TIMEOUT, MAX_FETCH_ATTEMPTS), Duration::MAX);
        assert_eq!(ttl, MAX_SHARED_CACHE_LOCK_TTL);
    }
}
