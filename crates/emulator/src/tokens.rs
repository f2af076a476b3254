//! Issued access tokens: lifetime on tokio's clock, revocation, and the bearer check.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::keys::Key;
use crate::sync::{lock, read, write};

/// Why a bearer token was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejected {
    Missing,
    Unknown,
    Expired,
    Revoked,
}

impl Rejected {
    pub(crate) fn message(self) -> &'static str {
        match self {
            Rejected::Missing => "missing bearer token in the Authorization header",
            Rejected::Unknown => "invalid access token",
            Rejected::Expired => "access token expired",
            Rejected::Revoked => "access token revoked",
        }
    }
}

#[derive(Debug)]
struct Entry {
    key: Arc<Key>,
    /// `None`: the TTL is too large to represent, the token never expires.
    expires_at: Option<Instant>,
    revoked: bool,
}

/// A token and the `id_token` that comes with it.
#[derive(Debug)]
pub(crate) struct Issued {
    pub(crate) access_token: String,
    pub(crate) id_token: String,
}

#[derive(Debug)]
pub(crate) struct TokenStore {
    tokens: RwLock<HashMap<String, Entry>>,
    issued: Mutex<Vec<String>>,
    rng: Mutex<StdRng>,
}

impl TokenStore {
    pub(crate) fn new() -> Self {
        TokenStore {
            tokens: RwLock::default(),
            issued: Mutex::default(),
            rng: Mutex::new(StdRng::from_os_rng()),
        }
    }

    pub(crate) fn issue(&self, key: Arc<Key>, ttl: Duration) -> Issued {
        let (access_token, id_token) = {
            let mut rng = lock(&self.rng);
            (opaque("evo_", &mut rng), opaque("evo_id_", &mut rng))
        };
        let entry = Entry {
            key,
            expires_at: Instant::now().checked_add(ttl),
            revoked: false,
        };
        write(&self.tokens).insert(access_token.clone(), entry);
        lock(&self.issued).push(access_token.clone());
        Issued {
            access_token,
            id_token,
        }
    }

    /// Accept a static API key as a bearer token of `key` that never expires. It is not
    /// listed as issued; [`revoke`](Self::revoke) of it makes it answer 401.
    pub(crate) fn add_static(&self, api_key: &str, key: Arc<Key>) {
        let entry = Entry {
            key,
            expires_at: None,
            revoked: false,
        };
        write(&self.tokens).insert(api_key.to_owned(), entry);
    }

    /// The key a live token belongs to.
    pub(crate) fn validate(&self, token: &str) -> Result<Arc<Key>, Rejected> {
        let (key, live) = self.owner(token).ok_or(Rejected::Unknown)?;
        live.map(|()| key)
    }

    /// The key a token was issued for, live or not, and whether it is live: an expired or
    /// revoked token still names its key.
    pub(crate) fn owner(&self, token: &str) -> Option<(Arc<Key>, Result<(), Rejected>)> {
        let tokens = read(&self.tokens);
        let entry = tokens.get(token)?;
        let live = if entry.revoked {
            Err(Rejected::Revoked)
        } else {
            match entry.expires_at {
                Some(at) if Instant::now() >= at => Err(Rejected::Expired),
                _ => Ok(()),
            }
        };
        Some((entry.key.clone(), live))
    }

    /// Revoke one token; false if it was never issued.
    pub(crate) fn revoke(&self, token: &str) -> bool {
        match write(&self.tokens).get_mut(token) {
            Some(entry) => {
                entry.revoked = true;
                true
            }
            None => false,
        }
    }

    /// Revoke every token issued so far for `key_id`; returns how many were live.
    pub(crate) fn revoke_key(&self, key_id: &str) -> usize {
        let mut revoked = 0;
        for entry in write(&self.tokens).values_mut() {
            if entry.key.id == key_id && !entry.revoked {
                entry.revoked = true;
                revoked += 1;
            }
        }
        revoked
    }

    pub(crate) fn issued(&self) -> Vec<String> {
        lock(&self.issued).clone()
    }
}

/// `prefix` followed by 32 random hex digits.
fn opaque(prefix: &str, rng: &mut StdRng) -> String {
    let bits: u128 = rng.random();
    let mut token = String::with_capacity(prefix.len() + 32);
    token.push_str(prefix);
    let _ = write!(token, "{bits:032x}");
    token
}
