//! [`RedisStore`]: the shared cache in Redis.

use std::fmt;
use std::future::Future;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;
use tokio::time::Duration;

use super::{DEFAULT_STORE_TIMEOUT, LockToken, StoreError, StoredToken, TokenStore};

/// Releases a lock only if it still holds this holder's token.
const UNLOCK: &str = r"
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
";

/// Reconnection attempts inside one operation; the manager's timeout bounds them anyway.
const RECONNECT_RETRIES: usize = 2;
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);

/// A [`TokenStore`] in Redis: `GET` + `PTTL`, `SET PX`, `SET NX PX` for the lock and a Lua
/// compare-and-delete to release it. Values are sealed (see [`store`](super)): Redis never
/// holds a usable token.
///
/// It connects on first use (inside the refresh task, so building a manager needs no
/// runtime and no reachable Redis) through a `redis` connection manager that reconnects
/// after failures. Cheap to share: one per process is enough for every key. TLS with
/// `rediss://` URLs (rustls, the platform's root certificates).
///
/// ```
/// use std::sync::Arc;
/// use evolution_token::{Credentials, TokenManager};
/// use evolution_token::store::RedisStore;
///
/// let store = Arc::new(RedisStore::new("redis://127.0.0.1:6379/0")?);
/// let tokens = TokenManager::builder(Credentials::new("key-id", "secret"))
///     .shared_cache(store)
///     .build()?;
/// # drop(tokens);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RedisStore {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    unlock: redis::Script,
    timeout: Duration,
    /// `host:port/db`: the URL without credentials, for `Debug`.
    address: String,
}

impl RedisStore {
    /// A store at `url`: `redis://[user:password@]host[:port][/db]`, `rediss://` for TLS,
    /// or `redis+unix:///path`. Nothing is sent until first use.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the URL is not a Redis URL. The message never repeats the URL,
    /// which may hold a password.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url.trim()).map_err(|error| {
            StoreError::new(format!(
                "the shared cache URL is not a valid Redis URL (redis://, rediss:// or redis+unix://): {}",
                error.detail().unwrap_or("it did not parse")
            ))
        })?;
        let info = client.get_connection_info();
        let address = format!("{}/{}", info.addr(), info.redis_settings().db());
        Ok(Self {
            client,
            connection: OnceCell::new(),
            unlock: redis::Script::new(UNLOCK),
            timeout: DEFAULT_STORE_TIMEOUT,
            address,
        })
    }

    /// Limit for connecting and for each answer; the manager's own limit
    /// ([`shared_cache_timeout`](crate::TokenManagerBuilder::shared_cache_timeout)) applies
    /// on top. Defaults to 1 second.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        self.connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(RECONNECT_RETRIES)
                    .set_min_delay(RECONNECT_MIN_DELAY);
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
                    .map_err(|error| failed("connect", error))
            })
            .await
            .cloned()
    }
}

fn failed(operation: &str, error: redis::RedisError) -> StoreError {
    StoreError::with_source(format!("redis `{operation}` failed"), error)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

#[async_trait]
impl TokenStore for RedisStore {
    async fn load(&self, key: &str) -> Result<Option<StoredToken>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.get(key).pttl(key);
        let (value, pttl): (Option<Vec<u8>>, i64) = self
            .run("get", |mut connection| {
                let pipe = &pipe;
                async move { pipe.query_async(&mut connection).await }
            })
            .await?;
        Ok(match (value, pttl) {
            // -2: the key expired between the two commands.
            (None, _) | (_, -2) => None,
            // -1: stored without expiry (not by us); the sealed expiry still bounds it.
            (Some(value), -1) => Some(StoredToken::new(value, None)),
            (Some(value), ms) => Some(StoredToken::new(
                value,
                Some(Duration::from_millis(ms.max(0).unsigned_abs())),
            )),
        })
    }

    async fn save(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let mut set = redis::cmd("SET");
        set.arg(key).arg(value).arg("PX").arg(millis(ttl));
        self.run("set", |mut connection| {
            let set = &set;
            async move { set.query_async::<()>(&mut connection).await }
        })
        .await
    }

    async fn try_lock(&self, key: &str, ttl: Duration) -> Result<Option<LockToken>, StoreError> {
        let token = LockToken::random();
        let mut set = redis::cmd("SET");
        set.arg(lock_key(key))
            .arg(token.as_str())
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl));
        let set: Option<String> = self
            .run("set nx", |mut connection| {
                let set = &set;
                async move { set.query_async(&mut connection).await }
            })
            .await?;
        Ok(set.map(|_ok| token))
    }

    async fn unlock(&self, key: &str, lock: &LockToken) -> Result<(), StoreError> {
        let mut unlock = self.unlock.prepare_invoke();
        unlock.key(lock_key(key)).arg(lock.as_str());
        self.run("unlock", |mut connection| {
            let unlock = &unlock;
            async move { unlock.invoke_async::<i64>(&mut connection).await }
        })
        .await
        .map(drop)
    }
}

impl RedisStore {
    /// Runs `command` on the connection, once more if the connection was gone: after
    /// Redis comes back, the connection manager hands out the old connection's failure
    /// once (and reconnects), which would cost a replica its first shared refresh.
    async fn run<T, F, Fut>(&self, operation: &'static str, command: F) -> Result<T, StoreError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let connection = self.connection().await?;
        let result = match command(connection.clone()).await {
            Err(error)
                if error.is_io_error()
                    || error.is_connection_dropped()
                    || error.is_connection_refusal() =>
            {
                command(connection).await
            }
            result => result,
        };
        result.map_err(|error| failed(operation, error))
    }
}

fn lock_key(key: &str) -> String {
    format!("{key}:lock")
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("address", &self.address)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_errors_never_show_the_password() {
        let store = RedisStore::new("redis://user:hunter2@cache.internal:6380/3").unwrap();
        let debug = format!("{store:?}");
        assert!(debug.contains("cache.internal:6380/3"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");

        let error = RedisStore::new("http://user:hunter2@cache.internal/").unwrap_err();
        let text = format!("{error} {error:?}");
        assert!(text.contains("not a valid Redis URL"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn a_bad_url_fails_the_build_without_showing_it() {
        let error = crate::TokenManager::builder(crate::Credentials::new("k", "s"))
            .shared_cache_redis("redis//user:hunter2@cache.internal")
            .build()
            .unwrap_err();
        let text = error.to_string();
        assert!(matches!(
            error,
            crate::TokenError::InvalidConfiguration { .. }
        ));
        assert!(text.contains("not a valid Redis URL"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn tls_and_unix_urls_are_accepted() {
        RedisStore::new("rediss://cache.internal:6380").unwrap();
        RedisStore::new("redis+unix:///run/redis.sock").unwrap();
    }
}
