//! Key id and secret, what IAM exchanges for an access token, or a static Foundation Models
//! API key, which is sent as the token itself.

use std::fmt;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use crate::TokenError;

/// Environment variable read by [`Credentials::from_env`] for the key id.
pub const ENV_KEY_ID: &str = "EVOLUTION_KEY_ID";
/// Environment variable read by [`Credentials::from_env`] for the secret.
pub const ENV_SECRET: &str = "EVOLUTION_SECRET";
/// Environment variable read by [`Credentials::from_env`] for a static Foundation Models API
/// key, used instead of `EVOLUTION_KEY_ID` and `EVOLUTION_SECRET`.
pub const ENV_API_KEY: &str = "EVOLUTION_API_KEY";

/// The prefix of a static API key's label, [`Credentials::key_id`].
const API_KEY_LABEL_PREFIX: &str = "api-key-";

/// A Cloud.ru service account key: the key id and its secret, exchanged at IAM for
/// tokens; or a static Foundation Models API key ([`Credentials::api_key`]), sent as the
/// token itself.
///
/// The secret lives in a [`SecretString`]: it is zeroized on drop and never
/// printed, not even by `Debug`.
///
/// ```
/// use evolution_token::Credentials;
///
/// let credentials = Credentials::new("my-key-id", "my-secret");
/// assert_eq!(credentials.key_id(), "my-key-id");
/// assert!(!format!("{credentials:?}").contains("my-secret"));
/// ```
#[derive(Clone)]
pub struct Credentials {
    /// For an API key, its non-secret label.
    key_id: Arc<str>,
    /// For an API key, the key.
    secret: SecretString,
    kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Key id and secret, exchanged at IAM.
    Iam,
    /// A static API key: no IAM exchange.
    ApiKey,
}

impl Credentials {
    /// Creates credentials from a key id and a secret.
    ///
    /// Nothing is checked here; [`TokenManagerBuilder::build`](crate::TokenManagerBuilder::build)
    /// rejects empty values with a clear error.
    pub fn new(key_id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            key_id: Arc::from(key_id.into()),
            secret: SecretString::from(secret.into()),
            kind: Kind::Iam,
        }
    }

    /// A static Foundation Models API key, which goes straight into
    /// `Authorization: Bearer`: a [`TokenManager`](crate::TokenManager) built on it never
    /// asks IAM (and ignores its auth URL and the shared cache). Its "refresh" hands out the
    /// same key again, without a request, so a rejected key is resent once, like a fresh
    /// token after a 401, before the rejection reaches the caller.
    ///
    /// The key is not printed anywhere: [`key_id`](Self::key_id), which names the key in
    /// logs, metric labels and errors, is the label `api-key-` followed by the first 8 hex
    /// digits of the key's SHA-256, which identifies the key without revealing it.
    ///
    /// Nothing is checked here; [`TokenManagerBuilder::build`](crate::TokenManagerBuilder::build)
    /// rejects an empty key, or one with whitespace, with a clear error.
    ///
    /// ```
    /// use evolution_token::{Credentials, TokenManager};
    ///
    /// let credentials = Credentials::api_key("my-api-key");
    /// assert!(credentials.is_api_key());
    /// assert!(credentials.key_id().starts_with("api-key-"));
    /// assert!(!format!("{credentials:?}").contains("my-api-key"));
    /// let tokens = TokenManager::builder(credentials).build()?;
    /// # drop(tokens);
    /// # Ok::<(), evolution_token::TokenError>(())
    /// ```
    pub fn api_key(key: impl Into<String>) -> Self {
        let key = SecretString::from(key.into());
        Self {
            key_id: Arc::from(api_key_label(key.expose_secret())),
            secret: key,
            kind: Kind::ApiKey,
        }
    }

    /// Reads `EVOLUTION_API_KEY` when it is set, else `EVOLUTION_KEY_ID` and
    /// `EVOLUTION_SECRET`.
    ///
    /// # Errors
    ///
    /// [`TokenError::InvalidConfiguration`] naming the variable that is unset or empty, or
    /// naming both kinds when `EVOLUTION_API_KEY` and a key id or secret are all set.
    pub fn from_env() -> Result<Self, TokenError> {
        let set = |name: &str| std::env::var(name).is_ok_and(|value| !value.trim().is_empty());
        if !set(ENV_API_KEY) {
            return Self::from_env_vars(ENV_KEY_ID, ENV_SECRET);
        }
        if set(ENV_KEY_ID) || set(ENV_SECRET) {
            return Err(TokenError::config(
                "api_key",
                format!(
                    "both {ENV_API_KEY} and {ENV_KEY_ID}/{ENV_SECRET} are set: set either the API key or the key id and secret"
                ),
            ));
        }
        let key = std::env::var(ENV_API_KEY).unwrap_or_default();
        Ok(Self::api_key(key.trim()))
    }

    /// Reads the key id and the secret from the two named environment variables
    /// (for example `EVOLUTION_BACKUP_KEY_ID` and `EVOLUTION_BACKUP_SECRET`).
    ///
    /// # Errors
    ///
    /// [`TokenError::InvalidConfiguration`] naming the variable that is unset or empty.
    pub fn from_env_vars(key_id_var: &str, secret_var: &str) -> Result<Self, TokenError> {
        let read = |setting: &'static str, name: &str| match std::env::var(name) {
            Ok(value) if !value.trim().is_empty() => Ok(value),
            Ok(_) => Err(TokenError::config(
                setting,
                format!("{name} is set but empty"),
            )),
            Err(_) => Err(TokenError::config(setting, format!("{name} is not set"))),
        };
        Ok(Self::new(
            read("key_id", key_id_var)?,
            read("secret", secret_var)?,
        ))
    }

    /// The key id, or for an API key its label (see [`api_key`](Self::api_key)). It is not
    /// secret and appears in logs and errors.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The secret, for code that must send it (the IAM exchange); for an API key, the key.
    pub fn secret(&self) -> &SecretString {
        &self.secret
    }

    /// Whether these are a static API key ([`api_key`](Self::api_key)), which is sent as
    /// the token, rather than a key id and secret exchanged at IAM.
    pub fn is_api_key(&self) -> bool {
        self.kind == Kind::ApiKey
    }

    pub(crate) fn shared_key_id(&self) -> Arc<str> {
        self.key_id.clone()
    }

    pub(crate) fn validate(&self) -> Result<(), TokenError> {
        if self.is_api_key() {
            let key = self.secret.expose_secret();
            if key.trim().is_empty() {
                return Err(TokenError::config(
                    "api_key",
                    "the API key is empty: pass it to Credentials::api_key or set EVOLUTION_API_KEY",
                ));
            }
            // It goes into a header as it is: better refused here than at the first call.
            if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(TokenError::config(
                    "api_key",
                    format!(
                        "the API key `{}` contains whitespace or control characters: check how it was copied",
                        self.key_id
                    ),
                ));
            }
            return Ok(());
        }
        if self.key_id.trim().is_empty() {
            return Err(TokenError::config(
                "key_id",
                "the key id is empty: pass it to Credentials::new or set EVOLUTION_KEY_ID",
            ));
        }
        if self.secret.expose_secret().trim().is_empty() {
            return Err(TokenError::config(
                "secret",
                format!(
                    "the secret for key id `{}` is empty: pass it to Credentials::new or set EVOLUTION_SECRET",
                    self.key_id
                ),
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = match self.kind {
            Kind::Iam => "secret",
            Kind::ApiKey => "api_key",
        };
        f.debug_struct("Credentials")
            .field("key_id", &self.key_id)
            .field(secret, &"[REDACTED]")
            .finish()
    }
}

/// `api-key-` and the first 8 hex digits of the key's SHA-256: 32 bits, enough to tell a
/// handful of keys apart, and one-way, so the label can go wherever a key id goes.
fn api_key_label(key: &str) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write as _;

    let digest = Sha256::digest(key.as_bytes());
    let mut label = String::with_capacity(API_KEY_LABEL_PREFIX.len() + 8);
    label.push_str(API_KEY_LABEL_PREFIX);
    for byte in &digest[..4] {
        let _ = write!(label, "{byte:02x}");
    }
    label
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_label_is_a_digest_prefix() {
        // sha256("abc") = ba7816bf...
        assert_eq!(Credentials::api_key("abc").key_id(), "api-key-ba7816bf");
    }

    #[test]
    fn api_key_is_checked() {
        let empty = Credentials::api_key("  ").validate().unwrap_err();
        assert!(empty.to_string().contains("api_key"), "{empty}");
        let spaced = Credentials::api_key("one two-secret")
            .validate()
            .unwrap_err();
        assert!(!spaced.to_string().contains("two-secret"), "{spaced}");
        assert!(Credentials::api_key("k").validate().is_ok());
    }
}
