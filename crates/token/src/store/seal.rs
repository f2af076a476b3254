//! Key names in the store and sealed values: nothing there is usable without the secret.
//!
//! A value is `version ‖ nonce ‖ ChaCha20-Poly1305(expires_at_ms ‖ lifetime_ms ‖ token)`,
//! with a random 96-bit nonce and the version and key name as associated data, under a key
//! derived with HKDF-SHA256 from the secret (info: a label, the key id and the auth URL).

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hkdf::Hkdf;
use rand::Rng;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio::time::Duration;

/// Format version, first byte of every value and part of the key names: replicas of two
/// versions never misread each other's values.
const VERSION: u8 = 1;
const KEY_PREFIX: &str = "evolution:token:v1:";
const KDF_LABEL: &[u8] = b"evolution-token shared cache v1";
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = 1 + NONCE_LEN;
const TAG_LEN: usize = 16;
/// `expires_at_ms` and `lifetime_ms`, big-endian.
const META_LEN: usize = 16;

/// The name under which the token of `key_id` at `auth_url` is stored:
/// `evolution:token:v1:` and 32 hex digits of SHA-256 over the key id and the auth URL.
/// Neither the key id nor the secret can be read from it.
///
/// ```
/// let key = evolution_token::store::store_key("my-key-id", "https://iam.api.cloud.ru/api/v1/auth/token");
/// assert!(key.starts_with("evolution:token:v1:"));
/// assert!(!key.contains("my-key-id"));
/// ```
pub fn store_key(key_id: &str, auth_url: &str) -> String {
    let digest = Sha256::new()
        .chain_update(key_id.as_bytes())
        .chain_update([0])
        .chain_update(auth_url.as_bytes())
        .finalize();
    let mut key = String::with_capacity(KEY_PREFIX.len() + 32);
    key.push_str(KEY_PREFIX);
    for byte in &digest[..16] {
        key.push_str(&format!("{byte:02x}"));
    }
    key
}

/// Seals and opens the values of one key (key id, secret, auth URL).
pub(crate) struct Sealer {
    /// Wipes its key on drop (the `zeroize` feature of chacha20poly1305).
    cipher: ChaCha20Poly1305,
    key: String,
}

/// An opened value.
pub(crate) struct Opened {
    pub(crate) token: SecretString,
    /// Absolute expiry on the writer's wall clock, Unix milliseconds.
    pub(crate) expires_at_ms: u64,
    /// The lifetime IAM granted.
    pub(crate) lifetime: Duration,
}

impl Sealer {
    pub(crate) fn new(secret: &SecretString, key_id: &str, auth_url: &str) -> Self {
        let key = store_key(key_id, auth_url);
        let kdf = Hkdf::<Sha256>::new(None, secret.expose_secret().as_bytes());
        let mut derived = Zeroizing::new([0u8; 32]);
        kdf.expand_multi_info(
            &[
                KDF_LABEL,
                &(key_id.len() as u64).to_be_bytes(),
                key_id.as_bytes(),
                &(auth_url.len() as u64).to_be_bytes(),
                auth_url.as_bytes(),
            ],
            &mut derived[..],
        )
        .expect("32 bytes is a valid HKDF-SHA256 output length");
        let cipher =
            ChaCha20Poly1305::new_from_slice(&derived[..]).expect("the derived key is 32 bytes");
        Self { cipher, key }
    }

    /// The store key these values live under.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(1 + self.key.len());
        aad.push(VERSION);
        aad.extend_from_slice(self.key.as_bytes());
        aad
    }

    /// Seals a token.
    pub(crate) fn seal(
        &self,
        token: &SecretString,
        expires_at_ms: u64,
        lifetime: Duration,
    ) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        // ThreadRng is a CSPRNG seeded from the OS; 96 random bits per value.
        rand::rng().fill(&mut nonce);
        let token = token.expose_secret().as_bytes();
        let lifetime_ms = u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX);
        // Room for the tag up front: no reallocation leaves a plaintext copy behind.
        let mut value = Vec::with_capacity(HEADER_LEN + META_LEN + token.len() + TAG_LEN);
        value.push(VERSION);
        value.extend_from_slice(&nonce);
        let mut body = Zeroizing::new(Vec::with_capacity(META_LEN + token.len() + TAG_LEN));
        body.extend_from_slice(&expires_at_ms.to_be_bytes());
        body.extend_from_slice(&lifetime_ms.to_be_bytes());
        body.extend_from_slice(token);
        self.cipher
            .encrypt_in_place(&Nonce::from(nonce), &self.aad(), &mut *body)
            .expect("a token is far below ChaCha20-Poly1305's message limit");
        value.extend_from_slice(&body);
        value
    }

    /// Opens a value; `None` if it is not one of ours: another version, another secret,
    /// another key name, or tampered with.
    pub(crate) fn open(&self, value: &[u8]) -> Option<Opened> {
        if value.len() < HEADER_LEN + META_LEN + TAG_LEN || value[0] != VERSION {
            return None;
        }
        let nonce: [u8; NONCE_LEN] = value[1..HEADER_LEN].try_into().ok()?;
        let mut body = Zeroizing::new(value[HEADER_LEN..].to_vec());
        self.cipher
            .decrypt_in_place(&Nonce::from(nonce), &self.aad(), &mut *body)
            .ok()?;
        let expires_at_ms = u64::from_be_bytes(body[..8].try_into().ok()?);
        let lifetime_ms = u64::from_be_bytes(body[8..META_LEN].try_into().ok()?);
        let token = std::str::from_utf8(&body[META_LEN..]).ok()?;
        Some(Opened {
            token: SecretString::from(token.to_owned()),
            expires_at_ms,
            lifetime: Duration::from_millis(lifetime_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://iam.api.cloud.ru/api/v1/auth/token";

    fn sealer(secret: &str) -> Sealer {
        Sealer::new(&SecretString::from(secret.to_owned()), "key-id", URL)
    }

    #[test]
    fn round_trip() {
        let sealer = sealer("secret");
        let token = SecretString::from("evo_token_value".to_owned());
        let value = sealer.seal(&token, 1_700_000_000_000, Duration::from_secs(3600));
        let opened = sealer.open(&value).unwrap();
        assert_eq!(opened.token.expose_secret(), "evo_token_value");
        assert_eq!(opened.expires_at_ms, 1_700_000_000_000);
        assert_eq!(opened.lifetime, Duration::from_secs(3600));
    }

    #[test]
    fn value_holds_no_token_and_changes_every_time() {
        let sealer = sealer("secret");
        let token = SecretString::from("evo_token_value".to_owned());
        let a = sealer.seal(&token, 1, Duration::from_secs(1));
        let b = sealer.seal(&token, 1, Duration::from_secs(1));
        assert_ne!(a, b, "random nonces");
        for value in [&a, &b] {
            assert!(!value.windows(9).any(|w| w == b"evo_token"));
        }
    }

    #[test]
    fn another_secret_key_or_url_cannot_open_it() {
        let token = SecretString::from("evo_token_value".to_owned());
        let value = sealer("secret").seal(&token, 1, Duration::from_secs(1));
        assert!(sealer("other-secret").open(&value).is_none());
        let other_url = Sealer::new(
            &SecretString::from("secret".to_owned()),
            "key-id",
            "https://x/",
        );
        assert!(other_url.open(&value).is_none());
        let other_key = Sealer::new(&SecretString::from("secret".to_owned()), "key-id2", URL);
        assert!(other_key.open(&value).is_none());
    }

    #[test]
    fn tampered_or_truncated_values_are_rejected() {
        let sealer = sealer("secret");
        let token = SecretString::from("evo_token_value".to_owned());
        let value = sealer.seal(&token, 1, Duration::from_secs(1));
        for i in 0..value.len() {
            let mut tampered = value.clone();
            tampered[i] ^= 1;
            assert!(sealer.open(&tampered).is_none(), "byte {i}");
        }
        for len in 0..value.len() {
            assert!(sealer.open(&value[..len]).is_none(), "length {len}");
        }
        assert!(sealer.open(b"").is_none());
    }

    #[test]
    fn key_names_hide_the_key_id_and_depend_on_the_url() {
        let key = store_key("key-id", URL);
        assert!(key.starts_with(KEY_PREFIX));
        assert_eq!(key.len(), KEY_PREFIX.len() + 32);
        assert!(!key.contains("key-id"));
        assert_ne!(key, store_key("key-id", "https://other/"));
        assert_eq!(key, sealer("anything").key());
    }
}
