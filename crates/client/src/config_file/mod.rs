//! The pool's configuration file: deployments and a strategy in TOML, named by
//! `EVOLUTION_CONFIG`, [`EvolutionInferenceBuilder::config_file`] or
//! [`EvolutionInference::from_config`].
//!
//! ```toml
//! strategy = "round_robin"        # ordered | round_robin | least_loaded | weighted
//! [[deployment]]
//! name = "main"                   # label in metrics and logs
//! key_id = "..."
//! secret_env = "MAIN_SECRET"      # or: secret = "..." (refused if the file is readable by others)
//!                                 # or, instead of key_id + secret: api_key_env = "VAR" / api_key = "..."
//! base_url = "..."                # optional, default EVOLUTION_BASE_URL
//! model = "..."                   # optional, default EVOLUTION_MODEL
//! rpm = 600                       # optional
//! tpm = 100000                    # optional
//! weight = 1                      # optional
//! ```
//!
//! The file is read and checked whole before anything is built, and its first mistake is a
//! [`ConfigFileError`] naming the file, the line, the deployment (its name, or `#2` for the
//! second when it has none yet) and the field, and saying what to do. Secrets never appear
//! in it: the variables that `secret_env` and `api_key_env` name are read when the file is
//! loaded, and only their names are reported.
//!
//! - Inside a `[[deployment]]` every key is known: a misspelled one (`secret_evn`) is an
//!   error, since a key silently ignored there could send traffic with the wrong limits.
//! - At the top level, keys other than `strategy` and `deployment` are ignored, so that the
//!   file can hold other tools' settings; they are listed by [`PoolConfig::ignored_keys`]
//!   and logged as a warning. A near miss of a known key (`stratgy`, `deployments`) is an
//!   error instead.
//! - A secret written inline (`secret`, `api_key`) is refused unless only the owner may
//!   read the file (on Unix, no permission bit for group or others: `chmod 600`).
//!
//! ```
//! use evolution_client::EvolutionInference;
//! use evolution_client::config_file::PoolConfig;
//! use evolution_client::pool::Strategy;
//!
//! let path = std::env::temp_dir().join(format!("pool-{}.toml", std::process::id()));
//! std::fs::write(
//!     &path,
//!     r#"
//! strategy = "round_robin"
//!
//! [[deployment]]
//! name = "main"
//! key_id = "key-id-1"
//! secret_env = "MAIN_SECRET"
//! rpm = 600
//!
//! [[deployment]]
//! name = "spare"
//! api_key_env = "SPARE_API_KEY"
//! "#,
//! )?;
//! // `PoolConfig::load(&path)` reads the variables from the environment; here they come
//! // from a closure, as they would from a secrets store.
//! let config = PoolConfig::load_with(&path, |variable| Some(format!("value-of-{variable}")))?;
//! assert_eq!(config.strategy(), Some(Strategy::RoundRobin));
//! let names: Vec<_> = config.deployments().iter().map(|d| d.name()).collect();
//! assert_eq!(names, ["main", "spare"]);
//!
//! // A client over them (base URL and model from the builder or the environment);
//! // `.config_file(&path)` would load the file itself, at the build.
//! let llm = EvolutionInference::builder()
//!     .model("your-model")
//!     .base_url("https://your-api-endpoint.com/v1")
//!     .pool_config(config)
//!     .build()?;
//! # drop(llm);
//! std::fs::remove_file(&path)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod parse;

use std::path::{Path, PathBuf};

use evolution_pool::Strategy;

use crate::Result;
use crate::builder::EvolutionInferenceBuilder;
use crate::client::EvolutionInference;
use crate::deployment::Deployment;

pub use self::error::ConfigFileError;

/// Files larger than this are refused: 64 deployments fit in a few KiB, and a path to
/// something else (a log, `/dev/zero`) must not be read into memory whole.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// A configuration file, read and checked: its deployments, with their secrets read from
/// the variables it names, and its strategy.
///
/// [`EvolutionInferenceBuilder::pool_config`] gives it to a client; the CLI also uses it to
/// check every key.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    path: PathBuf,
    strategy: Option<Strategy>,
    local_fraction: Option<f64>,
    deployments: Vec<Deployment>,
    ignored_keys: Vec<String>,
}

impl PoolConfig {
    /// Reads and checks the file at `path`, with the secrets of `secret_env` and
    /// `api_key_env` from the process's environment.
    ///
    /// # Errors
    ///
    /// A [`ConfigFileError`] for the file's first mistake.
    pub fn load(path: impl AsRef<Path>) -> std::result::Result<Self, ConfigFileError> {
        Self::load_with(path, |name| std::env::var(name).ok())
    }

    /// As [`load`](Self::load), with the variables named by `secret_env` and `api_key_env`
    /// looked up by `env` instead of in the environment (a secrets store, a test).
    ///
    /// # Errors
    ///
    /// A [`ConfigFileError`] for the file's first mistake.
    pub fn load_with(
        path: impl AsRef<Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> std::result::Result<Self, ConfigFileError> {
        let path = path.as_ref();
        let (text, mode) = parse::read(path)?;
        let config = parse::Parser {
            path,
            text: &text,
            mode,
            env: &env,
        }
        .parse()?;
        for key in &config.ignored_keys {
            tracing::warn!(
                path = %path.display(),
                key,
                "the configuration file has a key that is not the pool's: ignored"
            );
        }
        Ok(config)
    }

    /// The file's path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The strategy, if the file names one.
    pub fn strategy(&self) -> Option<Strategy> {
        self.strategy
    }

    /// `local_fraction`, if the file sets it: the share of each rate limit a replica keeps
    /// while the Redis that shares the limits is unreachable (see
    /// [`rate_limit_local_fraction`](crate::EvolutionInferenceBuilder::rate_limit_local_fraction)).
    pub fn local_fraction(&self) -> Option<f64> {
        self.local_fraction
    }

    /// The deployments, in the file's order (at least one, at most
    /// [`MAX_DEPLOYMENTS`](evolution_pool::MAX_DEPLOYMENTS), with distinct names).
    pub fn deployments(&self) -> &[Deployment] {
        &self.deployments
    }

    /// The top-level keys that are not the pool's, which were ignored.
    pub fn ignored_keys(&self) -> &[String] {
        &self.ignored_keys
    }
}

impl EvolutionInferenceBuilder {
    /// Adds the deployments and the strategy of the TOML file at `path` (see
    /// [`config_file`](crate::config_file) for its shape). Also read from `EVOLUTION_CONFIG`.
    /// The file is read by [`build`](Self::build), and its mistakes are [`Error::Config`](crate::Error::Config)
    /// errors of `config_file` naming the file, the deployment and the field.
    ///
    /// As with [`pool_config`](Self::pool_config), the file's deployments come after those of
    /// [`deployment`](Self::deployment), and its strategy, when it names one, replaces the
    /// builder's. Deployments without a `base_url` or `model` use the client's.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Adds the deployments and the strategy of a file already loaded: they come after those
    /// of [`deployment`](Self::deployment), and the file's strategy, when it names one,
    /// replaces the builder's.
    pub fn pool_config(mut self, config: PoolConfig) -> Self {
        if let Some(strategy) = config.strategy {
            self = self.strategy(strategy);
        }
        if let Some(fraction) = config.local_fraction {
            self = self.rate_limit_local_fraction(fraction);
        }
        config
            .deployments
            .into_iter()
            .fold(self, |builder, deployment| builder.deployment(deployment))
    }

    /// Loads the file at `path` into the builder (at the start of the build).
    pub(crate) fn apply_config_file(self, path: &Path) -> Result<Self> {
        Ok(self.pool_config(PoolConfig::load(path)?))
    }
}

impl EvolutionInference {
    /// A client with the deployments and the strategy of the TOML file at `path` (see
    /// [`config_file`](crate::config_file)), everything else from the environment as for
    /// [`from_env`](Self::from_env): `EVOLUTION_BASE_URL` and `EVOLUTION_MODEL` for the
    /// deployments that do not set their own. `EVOLUTION_KEY_ID` and `EVOLUTION_SECRET` are
    /// not needed.
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) naming the file, the deployment and the field to fix, or the
    /// variable to set.
    pub fn from_config(path: impl AsRef<Path>) -> Result<Self> {
        EvolutionInferenceBuilder::from_env()
            .config_file(path.as_ref())
            .build()
    }
}
