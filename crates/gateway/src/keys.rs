//! The keys clients present to the gateway (`Authorization: Bearer <key>`).
//!
//! Only SHA-256 digests are kept, so a heap dump holds no key, and a presented key is compared
//! with every digest in constant time ([`subtle`]), so the time an answer takes says nothing
//! about how much of a key was right.

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// Environment variable with the gateway's keys, comma-separated.
pub const ENV_GATEWAY_KEYS: &str = "EVOLUTION_GATEWAY_KEYS";

/// The set of keys the gateway accepts. Empty: every request is accepted (the gateway then
/// binds only to loopback: see [`GatewayConfig::listen`](crate::GatewayConfig::listen)).
///
/// ```
/// use evolution_gateway::GatewayKeys;
///
/// let keys = GatewayKeys::parse_list("key-one, key-two")?;
/// assert_eq!(keys.len(), 2);
/// assert!(keys.accepts("key-two"));
/// assert!(!keys.accepts("key-three"));
/// # Ok::<(), evolution_gateway::KeysError>(())
/// ```
#[derive(Clone, Default)]
pub struct GatewayKeys {
    digests: Vec<[u8; 32]>,
}

/// A key list that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// A key holds whitespace or a control character, which no `Authorization` header carries.
    #[error(
        "gateway key {position} of {source_name} holds whitespace or a control character: a key is one token, as sent in `Authorization: Bearer <key>`"
    )]
    Malformed {
        /// 1-based position of the key (or line of the file).
        position: usize,
        /// Where the key came from.
        source_name: String,
    },
    /// The keys file could not be read.
    #[error("cannot read the gateway keys file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl GatewayKeys {
    /// No keys: every request is accepted.
    pub fn none() -> Self {
        Self::default()
    }

    /// Keys from a comma-separated list (`EVOLUTION_GATEWAY_KEYS`); blanks around and
    /// between commas are ignored.
    ///
    /// # Errors
    ///
    /// [`KeysError::Malformed`] for a key with whitespace inside.
    pub fn parse_list(list: &str) -> Result<Self, KeysError> {
        let mut keys = Self::default();
        keys.add_all(list.split(','), ENV_GATEWAY_KEYS)?;
        Ok(keys)
    }

    /// Adds the keys of a file: one per line; blank lines and lines starting with `#` are
    /// skipped.
    ///
    /// # Errors
    ///
    /// [`KeysError::File`] if it cannot be read, [`KeysError::Malformed`] for a bad line.
    pub fn add_file(&mut self, path: &Path) -> Result<(), KeysError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeysError::File {
            path: path.display().to_string(),
            source,
        })?;
        let lines = text.lines().map(|line| {
            if line.trim_start().starts_with('#') {
                ""
            } else {
                line
            }
        });
        self.add_all(lines, &path.display().to_string())
    }

    fn add_all<'a>(
        &mut self,
        keys: impl Iterator<Item = &'a str>,
        source_name: &str,
    ) -> Result<(), KeysError> {
        for (index, key) in keys.enumerate() {
            let key = key.trim();
            if key.is_empty() {
                continue;
            }
            if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(KeysError::Malformed {
                    position: index + 1,
                    source_name: source_name.to_owned(),
                });
            }
            let digest = digest(key);
            if !self.digests.contains(&digest) {
                self.digests.push(digest);
            }
        }
        Ok(())
    }

    /// How many distinct keys.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// Whether there are none (every request is accepted).
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether `key` is one of them. Compares with every key, in constant time.
    pub fn accepts(&self, key: &str) -> bool {
        let presented = digest(key);
        let mut found = Choice::from(0);
        for digest in &self.digests {
            found |= digest.ct_eq(&presented);
        }
        found.into()
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl fmt::Debug for GatewayKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not even the digests: they would let someone test guesses offline.
        f.debug_struct("GatewayKeys")
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_skips_blanks_and_duplicates() {
        let keys = GatewayKeys::parse_list(" a , ,b,a,").unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys.accepts("a") && keys.accepts("b"));
        assert!(!keys.accepts("") && !keys.accepts(" a"));
    }

    #[test]
    fn a_key_with_whitespace_inside_is_refused_with_its_position() {
        let error = GatewayKeys::parse_list("good,bad key").unwrap_err();
        assert!(matches!(error, KeysError::Malformed { position: 2, .. }));
        assert!(!error.to_string().contains("bad key"), "{error}");
    }

    #[test]
    fn a_file_skips_comments_and_blank_lines() {
        let path = std::env::temp_dir().join(format!("gateway-keys-{}", std::process::id()));
        std::fs::write(&path, "# ops team\nfirst\n\n  second  \n").unwrap();
        let mut keys = GatewayKeys::none();
        keys.add_file(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys.accepts("second"));
        assert!(!keys.accepts("# ops team"));
    }

    #[test]
    fn debug_shows_no_key_and_no_digest() {
        let keys = GatewayKeys::parse_list("super-secret-key").unwrap();
        assert_eq!(format!("{keys:?}"), "GatewayKeys { len: 1 }");
    }
}
