//! [`SharedLimits`]: the buckets of every replica in one Redis, with a local fallback.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::local::{LocalLimits, Refused};
use super::{Inner, LimitKind, Limited, RateLimits};

/// How long a Redis call may take before the call is limited locally. 50 milliseconds.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(50);
/// The share of its limits each replica applies alone while Redis is unavailable. One half.
pub const DEFAULT_LOCAL_FRACTION: f64 = 0.5;

/// While Redis is unavailable, one call a second tries it; the others go local at once
/// rather than each wait for the timeout.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Reconnection attempts inside one call; the timeout bounds them anyway.
const RECONNECT_RETRIES: usize = 1;
const FALLBACK_TOTAL: &str = "evolution_rate_limit_fallback_total";

/// The script's replies: `[decision, wait in microseconds]`.
const ADMITTED: i64 = 0;
const REQUESTS: i64 = 1;
const TOKENS: i64 = 2;

/// A Redis URL that did not parse. The message never repeats the URL, which may hold a
/// password.
#[derive(Debug, thiserror::Error)]
#[error(
    "the rate limits' Redis URL is not a valid Redis URL (redis://, rediss:// or redis+unix://): {detail}"
)]
pub struct SharedLimitsError {
    detail: String,
}

/// Rate limits shared by the replicas of a service through one Redis, so that N replicas
/// together stay under each deployment's RPM and TPM
/// ([`RateLimits::shared`]).
///
/// Each call runs one Lua script (GCRA on Redis's clock over the keys
/// `evolution:ratelimit:{<deployment>}:rpm` and `:tpm`, a Redis Cluster hash tag keeping
/// both in one slot) that checks and charges both limits atomically. When Redis does not
/// answer within the [timeout](Self::timeout), the call is limited in process at the
/// [local fraction](Self::local_fraction) of the limits: a warning once per outage, an
/// info line when Redis is back, and `evolution_rate_limit_fallback_total{deployment}`
/// counts each call limited locally. No call fails because of Redis.
///
/// Connects on first use; a clone shares the connection (one `Arc`). TLS with `rediss://`.
/// Its timeout is tokio's: under `tokio::time::pause()` the clock jumps while Redis
/// answers, so every call would be limited locally; test shared limits in real time.
///
/// ```
/// use std::num::NonZeroU32;
/// use evolution_pool::RateLimits;
/// use evolution_pool::limit::SharedLimits;
///
/// let redis = SharedLimits::new("redis://127.0.0.1:6379/0")?.local_fraction(0.25);
/// let limits = RateLimits::new(NonZeroU32::new(600), NonZeroU32::new(100_000))
///     .shared(&redis, "main");
/// # drop(limits);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SharedLimits {
    redis: Arc<Redis>,
    timeout: Duration,
    local_fraction: f64,
}

struct Redis {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    script: redis::Script,
    /// `host:port/db`: the URL without credentials, for logs and `Debug`.
    address: String,
    /// Set during an outage, so that the healthy path never takes the lock.
    degraded: AtomicBool,
    /// During an outage, when Redis is next tried.
    next_probe: Mutex<Option<Instant>>,
}

/// Why a Redis call gave no decision.
enum Failure {
    Redis(redis::RedisError),
    TimedOut,
    Reply(Vec<i64>),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Redis(error) => error.fmt(f),
            Self::TimedOut => f.write_str("no answer within the timeout"),
            Self::Reply(reply) => write!(f, "unexpected reply {reply:?}"),
        }
    }
}

impl SharedLimits {
    /// Limits shared through the Redis at `url`: `redis://[user:password@]host[:port][/db]`,
    /// `rediss://` for TLS, or `redis+unix:///path`. Nothing is sent until first use.
    ///
    /// # Errors
    ///
    /// [`SharedLimitsError`] if the URL is not a Redis URL.
    pub fn new(url: &str) -> Result<Self, SharedLimitsError> {
        let client = redis::Client::open(url.trim()).map_err(|error| SharedLimitsError {
            detail: error.detail().unwrap_or("it did not parse").to_owned(),
        })?;
        let info = client.get_connection_info();
        let address = format!("{}/{}", info.addr(), info.redis_settings().db());
        Ok(Self {
            redis: Arc::new(Redis {
                client,
                connection: OnceCell::new(),
                script: redis::Script::new(include_str!("gcra.lua")),
                address,
                degraded: AtomicBool::new(false),
                next_probe: Mutex::new(None),
            }),
            timeout: DEFAULT_REDIS_TIMEOUT,
            local_fraction: DEFAULT_LOCAL_FRACTION,
        })
    }

    /// The share of its limits each replica applies alone while Redis is unavailable,
    /// from 0 to 1 (each limit stays at least 1 a minute): about one over the number of
    /// replicas keeps the fleet under the key's limits. Defaults to 0.5; not a number
    /// means the default.
    #[must_use]
    pub fn local_fraction(mut self, fraction: f64) -> Self {
        self.local_fraction = if fraction.is_nan() {
            DEFAULT_LOCAL_FRACTION
        } else {
            fraction.clamp(0.0, 1.0)
        };
        self
    }

    /// How long each Redis call (connecting included) may take before the call is limited
    /// locally. Set it before first use. Defaults to 50 milliseconds.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn local(&self, limit: Option<NonZeroU32>) -> Option<NonZeroU32> {
        limit.map(|limit| {
            // Truncation is the point: never more than the fraction.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let local = (f64::from(limit.get()) * self.local_fraction) as u32;
            NonZeroU32::new(local).unwrap_or(NonZeroU32::MIN)
        })
    }

    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        self.redis
            .connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(RECONNECT_RETRIES);
                ConnectionManager::new_lazy_with_config(self.redis.client.clone(), config)
            })
            .await
            .cloned()
    }

    /// Runs the script for one call: Redis's decision, or why there is none.
    async fn take(
        &self,
        keys: &[String; 2],
        limits: [u32; 2],
        tokens: u32,
    ) -> Result<Result<(), Refused>, Failure> {
        let mut invocation = self.redis.script.prepare_invoke();
        invocation
            .key(&keys[0])
            .key(&keys[1])
            .arg(limits[0])
            .arg(limits[1])
            .arg(tokens);
        let call = async {
            let mut connection = self.connection().await?;
            invocation.invoke_async::<Vec<i64>>(&mut connection).await
        };
        let reply = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_elapsed| Failure::TimedOut)?
            .map_err(Failure::Redis)?;
        let kind = match reply[..] {
            [ADMITTED, _] => return Ok(Ok(())),
            [REQUESTS, _] => LimitKind::Requests,
            [TOKENS, _] => LimitKind::Tokens,
            _ => return Err(Failure::Reply(reply)),
        };
        let wait = Duration::from_micros(reply[1].max(0).unsigned_abs());
        Ok(Err(Refused {
            limited: Limited {
                kind,
                retry_in: wait,
            },
            tokens_taken: 0,
        }))
    }
}

impl Redis {
    /// Whether this call asks Redis: always, unless Redis is out and the next probe is
    /// not due (the call that finds it due takes it).
    fn may_try(&self) -> bool {
        if !self.degraded.load(Ordering::Relaxed) {
            return true;
        }
        let mut next_probe = self
            .next_probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match *next_probe {
            Some(at) if now < at => false,
            _ => {
                *next_probe = Some(now + PROBE_INTERVAL);
                true
            }
        }
    }

    fn failed(&self, failure: &Failure, fraction: f64) {
        let mut next_probe = self
            .next_probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                redis = %self.address,
                error = %failure,
                local_fraction = fraction,
                "rate limits: Redis is unavailable; each replica limits alone at a fraction of the limits until it is back"
            );
        }
        *next_probe = Some(Instant::now() + PROBE_INTERVAL);
    }

    fn answered(&self) {
        if self.degraded.load(Ordering::Relaxed) {
            let mut next_probe = self
                .next_probe
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if self.degraded.swap(false, Ordering::Relaxed) {
                *next_probe = None;
                tracing::info!(redis = %self.address, "rate limits: Redis is back; limits are shared again");
            }
        }
    }
}

/// One deployment's shared limits.
pub(crate) struct SharedDeployment {
    shared: SharedLimits,
    deployment: String,
    /// `[rpm, tpm]` keys and limits (0: none).
    keys: [String; 2],
    limits: [u32; 2],
}

impl SharedDeployment {
    /// Redis's decision, or the local fallback's when Redis gives none.
    pub(crate) async fn check(&self, tokens: u32, fallback: &LocalLimits) -> Result<(), Refused> {
        let redis = &self.shared.redis;
        if redis.may_try() {
            match self.shared.take(&self.keys, self.limits, tokens).await {
                Ok(decision) => {
                    redis.answered();
                    return decision;
                }
                Err(failure) => redis.failed(&failure, self.shared.local_fraction),
            }
        }
        metrics::counter!(FALLBACK_TOTAL, "deployment" => self.deployment.clone()).increment(1);
        fallback.check(tokens)
    }
}

impl RateLimits {
    /// These limits, shared through `shared` by every replica limiting `deployment` (the
    /// deployment's name: the same in every replica, and its label in metrics). Locally,
    /// while Redis is unavailable, each replica applies the
    /// [local fraction](SharedLimits::local_fraction) of them.
    ///
    /// Without any limit, nothing is shared: no call asks Redis.
    #[must_use]
    pub fn shared(self, shared: &SharedLimits, deployment: &str) -> Self {
        self.shared_as(shared, deployment, deployment)
    }

    /// As [`shared`](Self::shared), with the Redis buckets named by `bucket` instead of the
    /// deployment's name: the client names them by name and key id, so that two services
    /// sharing one Redis with a deployment of the same name but other keys do not share
    /// limits, and the replicas of one service (same name, same key) do.
    #[must_use]
    pub fn shared_as(self, shared: &SharedLimits, deployment: &str, bucket: &str) -> Self {
        let Inner {
            rpm, tpm, carry, ..
        } = &*self.inner;
        let (rpm, tpm) = (*rpm, *tpm);
        if rpm.is_none() && tpm.is_none() {
            return self;
        }
        let key = |kind: LimitKind| format!("evolution:ratelimit:{{{bucket}}}:{}", kind.as_str());
        let shared = SharedDeployment {
            shared: shared.clone(),
            deployment: deployment.to_owned(),
            keys: [key(LimitKind::Requests), key(LimitKind::Tokens)],
            limits: [rpm, tpm].map(|limit| limit.map_or(0, NonZeroU32::get)),
        };
        Self {
            inner: Arc::new(Inner {
                rpm,
                tpm,
                local: LocalLimits::new(shared.shared.local(rpm), shared.shared.local(tpm)),
                carry: AtomicI64::new(carry.load(Ordering::Relaxed)),
                shared: Some(shared),
            }),
        }
    }
}

impl fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedLimits")
            .field("address", &self.redis.address)
            .field("timeout", &self.timeout)
            .field("local_fraction", &self.local_fraction)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for SharedDeployment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("deployment", &self.deployment)
            .field("redis", &self.shared)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_errors_never_show_the_password() {
        let shared = SharedLimits::new("redis://user:hunter2@cache.internal:6380/3").unwrap();
        let limits = RateLimits::new(NonZeroU32::new(1), None).shared(&shared, "main");
        let debug = format!("{shared:?} {limits:?}");
        assert!(debug.contains("cache.internal:6380/3"), "{debug}");
        assert!(debug.contains("\"main\""), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");

        let error = SharedLimits::new("http://user:hunter2@cache.internal/").unwrap_err();
        let text = format!("{error} {error:?}");
        assert!(text.contains("not a valid Redis URL"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn the_local_fraction_is_bounded_and_leaves_at_least_one() {
        let shared = SharedLimits::new("redis://127.0.0.1/").unwrap();
        assert_eq!(shared.local_fraction, DEFAULT_LOCAL_FRACTION);
        assert_eq!(shared.local(NonZeroU32::new(31)), NonZeroU32::new(15));
        assert_eq!(shared.local(None), None);
        let shared = shared.local_fraction(0.0);
        assert_eq!(shared.local(NonZeroU32::new(600)), NonZeroU32::new(1));
        let shared = shared.local_fraction(7.0);
        assert_eq!(shared.local(NonZeroU32::new(600)), NonZeroU32::new(600));
        let shared = shared.local_fraction(f64::NAN);
        assert_eq!(shared.local_fraction, DEFAULT_LOCAL_FRACTION);
    }

    #[test]
    fn keys_share_one_hash_tag() {
        let shared = SharedLimits::new("redis://127.0.0.1/").unwrap();
        let limits =
            RateLimits::new(NonZeroU32::new(1), NonZeroU32::new(2)).shared(&shared, "main");
        let deployment = limits.inner.shared.as_ref().unwrap();
        assert_eq!(
            deployment.keys,
            [
                "evolution:ratelimit:{main}:rpm",
                "evolution:ratelimit:{main}:tpm"
            ]
        );
        assert_eq!(deployment.limits, [1, 2]);
        let unlimited = RateLimits::new(None, None).shared(&shared, "main");
        assert!(unlimited.inner.shared.is_none());
    }
}
