//! The access token handed to callers.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::{Duration, Instant};

/// An IAM access token with its expiry on the monotonic clock.
///
/// Cloning is cheap (one reference count). The value is never printed: `Debug`
/// shows a redaction marker and the remaining lifetime only.
#[derive(Clone)]
pub struct AccessToken {
    inner: Arc<Inner>,
}

struct Inner {
    /// Unique per fetched token, so "is this still the current token?" never
    /// compares secret values.
    id: u64,
    value: SecretString,
    bearer: HeaderValue,
    key_id: Arc<str>,
    fetched_at: Instant,
    expires_at: Instant,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl AccessToken {
    /// Builds a token valid until `expires_at`.
    ///
    /// Returns `None` when the value cannot be sent in an HTTP header
    /// (empty, or with control characters).
    pub fn new(
        value: SecretString,
        key_id: Arc<str>,
        fetched_at: Instant,
        expires_at: Instant,
    ) -> Option<Self> {
        let raw = value.expose_secret();
        if raw.is_empty() || raw.bytes().any(|b| b.is_ascii_whitespace()) {
            return None;
        }
        let mut bearer = HeaderValue::from_str(&format!("Bearer {raw}")).ok()?;
        bearer.set_sensitive(true);
        Some(Self {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                value,
                bearer,
                key_id,
                fetched_at,
                expires_at,
            }),
        })
    }

    /// A separate allocation holding the same token (same id), so that clones of it
    /// do not contend with clones of `self` on another thread.
    pub(crate) fn fork(&self) -> Self {
        let inner = &self.inner;
        let mut bearer = HeaderValue::from_bytes(inner.bearer.as_bytes())
            .unwrap_or_else(|_| inner.bearer.clone());
        bearer.set_sensitive(true);
        Self {
            inner: Arc::new(Inner {
                id: inner.id,
                value: SecretString::from(inner.value.expose_secret().to_owned()),
                bearer,
                key_id: Arc::from(&*inner.key_id),
                fetched_at: inner.fetched_at,
                expires_at: inner.expires_at,
            }),
        }
    }

    /// The token value, for code that must send it.
    pub fn secret(&self) -> &SecretString {
        &self.inner.value
    }

    /// `Bearer <token>` as a header value already marked sensitive, so
    /// tower-http's and hyper's `Debug` output never shows it.
    pub fn bearer_header(&self) -> HeaderValue {
        self.inner.bearer.clone()
    }

    /// The key id this token was issued for.
    pub fn key_id(&self) -> &str {
        &self.inner.key_id
    }

    /// The key id, shared (for events).
    pub(crate) fn shared_key_id(&self) -> Arc<str> {
        Arc::clone(&self.inner.key_id)
    }

    /// When the token stops being accepted (measured from before the IAM request was sent).
    pub fn expires_at(&self) -> Instant {
        self.inner.expires_at
    }

    /// When the IAM request that produced this token was sent.
    pub fn fetched_at(&self) -> Instant {
        self.inner.fetched_at
    }

    /// Time left before expiry, zero once expired.
    pub fn expires_in(&self) -> Duration {
        self.inner
            .expires_at
            .saturating_duration_since(Instant::now())
    }

    /// Whether the token has expired.
    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.inner.expires_at
    }

    /// Whether `self` and `other` are the same fetched token.
    pub fn same_as(&self, other: &AccessToken) -> bool {
        self.inner.id == other.inner.id
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("value", &"[REDACTED]")
            .field("key_id", &self.inner.key_id)
            .field("expires_in", &self.expires_in())
            .finish()
    }
}
