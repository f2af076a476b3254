//! [`Deployment`]: one key of a pool, with its own endpoint, model and limits.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;

use evolution_token::{Credentials, TokenManager};

/// One key of a [pool](crate::EvolutionInferenceBuilder::deployment): an IAM access key (key
/// id and secret) or a static API key, and optionally its own base URL, model, limits and
/// weight. Anything not set comes from the client (`base_url`, `model`).
///
/// ```
/// use evolution_client::{Deployment, EvolutionInference};
/// use evolution_client::pool::Strategy;
///
/// let llm = EvolutionInference::builder()
///     .model("your-model")
///     .base_url("https://your-api-endpoint.com/v1")
///     .deployment(Deployment::new("main", "key-id-1", "secret-1").rpm(600))
///     .deployment(Deployment::api_key("spare", "api-key-2").weight(2))
///     .strategy(Strategy::RoundRobin)
///     .build()?;
/// # drop(llm);
/// # Ok::<(), evolution_client::Error>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct Deployment {
    pub(crate) name: String,
    pub(crate) credentials: Credentials,
    pub(crate) base_url: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) rpm: Option<NonZeroU32>,
    pub(crate) tpm: Option<NonZeroU32>,
    pub(crate) weight: u32,
}

impl Deployment {
    /// A deployment named `name` (its label in metrics and logs) with an IAM access key.
    pub fn new(
        name: impl Into<String>,
        key_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        Self::with_credentials(name, Credentials::new(key_id, secret))
    }

    /// A deployment with a static Foundation Models API key.
    pub fn api_key(name: impl Into<String>, api_key: impl Into<String>) -> Self {
        Self::with_credentials(name, Credentials::api_key(api_key))
    }

    /// A deployment with credentials made elsewhere.
    pub fn with_credentials(name: impl Into<String>, credentials: Credentials) -> Self {
        Self {
            name: name.into(),
            credentials,
            base_url: None,
            model: None,
            rpm: None,
            tpm: None,
            weight: 1,
        }
    }

    /// Its own API base URL, instead of the client's.
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = Some(base_url.into());
        self
    }

    /// Its own model: requests for the client's model are sent for this one instead.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// At most `rpm` requests per minute (0: no limit).
    pub fn rpm(mut self, rpm: u32) -> Self {
        self.rpm = NonZeroU32::new(rpm);
        self
    }

    /// At most `tpm` tokens per minute, estimated before each call and corrected from its
    /// `usage` (0: no limit).
    pub fn tpm(mut self, tpm: u32) -> Self {
        self.tpm = NonZeroU32::new(tpm);
        self
    }

    /// Its share under the `weighted` strategy. Defaults to 1.
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The credentials (their `Debug` never shows the secret).
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }
}

impl fmt::Debug for Deployment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deployment")
            .field("name", &self.name)
            .field("key_id", &self.credentials.key_id())
            .field("base_url", &self.base_url.as_deref().map(without_userinfo))
            .field("model", &self.model)
            .field("rpm", &self.rpm)
            .field("tpm", &self.tpm)
            .field("weight", &self.weight)
            .finish()
    }
}

/// `url` without a user name or password (which a `Debug` must not print).
fn without_userinfo(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// One deployment of a client's pool as built: its name, its key's token manager and the
/// base URL its calls go to. From [`EvolutionInference::deployments`](crate::EvolutionInference::deployments).
#[derive(Debug, Clone)]
pub struct DeploymentKey {
    pub(crate) name: Arc<str>,
    pub(crate) tokens: TokenManager,
    pub(crate) base_url: Arc<str>,
}

impl DeploymentKey {
    /// The deployment's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its key's token manager (for a static API key, one that hands out the key).
    pub fn token_manager(&self) -> &TokenManager {
        &self.tokens
    }

    /// The base URL its calls go to, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}
