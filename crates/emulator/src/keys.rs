//! The IAM key ring: which key id / secret pairs exchange for tokens, and the static API
//! keys, which are accepted as bearer tokens themselves.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::fault::Fault;
use crate::route::Route;
use crate::sync::{read, write};

/// One access key. Its request counters live here so counting is one atomic add.
pub(crate) struct Key {
    pub(crate) id: String,
    secret: RwLock<String>,
    disabled: AtomicBool,
    pub(crate) chat_requests: AtomicU64,
    pub(crate) embeddings_requests: AtomicU64,
    /// A static API key, named by its label: never exchanged at IAM.
    pub(crate) api_key: bool,
    /// Latency added to this key's chat and embeddings requests (a slow deployment), in
    /// nanoseconds.
    latency_nanos: AtomicU64,
    /// Whether `fault` holds one, so that requests of a key without a fault take no lock.
    faulty: AtomicBool,
    /// The fault every chat and embeddings request of this key gets (a failing deployment).
    fault: RwLock<Option<Fault>>,
}

impl Key {
    fn new(id: String, secret: &str, api_key: bool) -> Self {
        Key {
            id,
            secret: RwLock::new(secret.to_owned()),
            disabled: AtomicBool::new(false),
            chat_requests: AtomicU64::new(0),
            embeddings_requests: AtomicU64::new(0),
            api_key,
            latency_nanos: AtomicU64::new(0),
            faulty: AtomicBool::new(false),
            fault: RwLock::new(None),
        }
    }

    /// The latency added to this key's inference requests.
    pub(crate) fn latency(&self) -> Duration {
        Duration::from_nanos(self.latency_nanos.load(Ordering::Relaxed))
    }

    /// The fault this key's inference requests get, if one is set.
    pub(crate) fn fault(&self) -> Option<Fault> {
        if !self.faulty.load(Ordering::Acquire) {
            return None;
        }
        read(&self.fault).clone()
    }

    /// Set (`Some`) or clear (`None`) the fault of this key's inference requests.
    fn set_fault(&self, fault: Option<Fault>) {
        let mut slot = write(&self.fault);
        self.faulty.store(fault.is_some(), Ordering::Release);
        *slot = fault;
    }

    /// Count one request of this key to an inference route (chat or embeddings).
    pub(crate) fn count(&self, route: Route) {
        let counter = match route {
            Route::Chat => &self.chat_requests,
            Route::Embeddings => &self.embeddings_requests,
            Route::Iam | Route::Models => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Zero this key's request counters.
    pub(crate) fn reset(&self) {
        self.chat_requests.store(0, Ordering::Relaxed);
        self.embeddings_requests.store(0, Ordering::Relaxed);
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .field("disabled", &self.disabled.load(Ordering::Relaxed))
            .field("api_key", &self.api_key)
            .finish()
    }
}

/// Why a key exchange was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// No such key id, or the secret does not match.
    BadCredentials,
    /// The key exists but was disabled at run time.
    Disabled,
}

#[derive(Debug, Default)]
pub(crate) struct KeyRing {
    keys: RwLock<HashMap<String, Arc<Key>>>,
}

impl KeyRing {
    /// Add a key, or replace the secret of an existing one (its state and counters stay).
    pub(crate) fn add(&self, id: &str, secret: &str) {
        let mut keys = write(&self.keys);
        if let Some(key) = keys.get(id) {
            *write(&key.secret) = secret.to_owned();
            return;
        }
        keys.insert(
            id.to_owned(),
            Arc::new(Key::new(id.to_owned(), secret, false)),
        );
    }

    /// Add a static API key under its label (see [`api_key_label`]), or find the one
    /// already added. It is listed with the keys so that its chat requests are counted
    /// by label, but IAM never accepts it.
    pub(crate) fn add_api_key(&self, api_key: &str) -> Arc<Key> {
        let id = api_key_label(api_key);
        let mut keys = write(&self.keys);
        keys.entry(id.clone())
            .or_insert_with(|| Arc::new(Key::new(id, "", true)))
            .clone()
    }

    pub(crate) fn authenticate(&self, id: &str, secret: &str) -> Result<Arc<Key>, Refused> {
        let key = read(&self.keys).get(id).cloned();
        let key = key.ok_or(Refused::BadCredentials)?;
        if key.api_key || *read(&key.secret) != secret {
            return Err(Refused::BadCredentials);
        }
        if key.disabled.load(Ordering::Acquire) {
            return Err(Refused::Disabled);
        }
        Ok(key)
    }

    /// Apply `change` to key `id`; false if there is no such key.
    fn with_key(&self, id: &str, change: impl FnOnce(&Key)) -> bool {
        read(&self.keys).get(id).map(|key| change(key)).is_some()
    }

    /// Add `latency` to every chat and embeddings request made with a token of key `id`
    /// (zero removes it). False if there is no such key.
    pub(crate) fn set_latency(&self, id: &str, latency: Duration) -> bool {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.with_key(id, |key| key.latency_nanos.store(nanos, Ordering::Relaxed))
    }

    /// Give every chat and embeddings request made with a token of key `id` this fault
    /// (`None` clears it). False if there is no such key.
    pub(crate) fn set_fault(&self, id: &str, fault: Option<Fault>) -> bool {
        self.with_key(id, |key| key.set_fault(fault))
    }

    /// Disable or enable a key at IAM; false if there is no such key.
    pub(crate) fn set_disabled(&self, id: &str, disabled: bool) -> bool {
        self.with_key(id, |key| key.disabled.store(disabled, Ordering::Release))
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        read(&self.keys).contains_key(id)
    }

    /// Every key, for counter snapshots and resets.
    pub(crate) fn all(&self) -> Vec<Arc<Key>> {
        read(&self.keys).values().cloned().collect()
    }
}

/// The label the client names a static API key by: `api-key-` and the first 8 hex digits of
/// the key's SHA-256.
pub(crate) fn api_key_label(api_key: &str) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write as _;

    let digest = Sha256::digest(api_key.as_bytes());
    let mut label = String::from("api-key-");
    for byte in &digest[..4] {
        let _ = write!(label, "{byte:02x}");
    }
    label
}
