//! Key id and secret: what IAM exchanges for an access token.

use std::fmt;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use crate::TokenError;

/// Environment variable read by [`Credentials::from_env`] for the key id.
pub const ENV_KEY_ID: &str = "EVOLUTION_KEY_ID";
/// Environment variable read by [`Credentials::from_env`] for the secret.
pub const ENV_SECRET: &str = "EVOLUTION_SECRET";

/// A Cloud.ru service account key: the key id and its secret.
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
    key_id: Arc<str>,
    secret: SecretString,
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
        }
    }

    /// Reads `EVOLUTION_KEY_ID` and `EVOLUTION_SECRET`.
    ///
    /// # Errors
    ///
    /// [`TokenError::InvalidConfiguration`] naming the variable that is unset or empty.
    pub fn from_env() -> Result<Self, TokenError> {
        Self::from_env_vars(ENV_KEY_ID, ENV_SECRET)
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

    /// The key id. It is not secret and appears in logs and errors.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The secret, for code that must send it (the IAM exchange).
    pub fn secret(&self) -> &SecretString {
        &self.secret
    }

    pub(crate) fn shared_key_id(&self) -> Arc<str> {
        self.key_id.clone()
    }

    pub(crate) fn validate(&self) -> Result<(), TokenError> {
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
        f.debug_struct("Credentials")
            .field("key_id", &self.key_id)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}
