//! Shared set-up for the examples: Cloud.ru when `EVOLUTION_BASE_URL` is set, the
//! embedded emulator otherwise.

use std::fmt;
use std::time::Duration;

use evolution_client::{EvolutionInference, EvolutionInferenceBuilder, Stats};
use evolution_emulator::{DEMO_KEY_ID, DEMO_MODEL, DEMO_SECRET, Emulator};
use evolution_token::{Credentials, TokenError};

/// Where an example's requests go.
#[derive(Debug)]
pub enum Target {
    /// Cloud.ru (or any endpoint) configured by the `EVOLUTION_*` variables.
    Remote,
    /// The emulator started in this process.
    Embedded(Emulator),
}

impl Target {
    /// Cloud.ru if `EVOLUTION_BASE_URL` is set, else a fresh embedded emulator.
    /// Prints which one as the example's first line.
    pub async fn pick() -> Self {
        if std::env::var_os("EVOLUTION_BASE_URL").is_some() {
            println!("Using the endpoint from EVOLUTION_BASE_URL (credentials from EVOLUTION_*).");
            Self::Remote
        } else {
            let emulator = Emulator::builder()
                .start()
                .await
                .expect("the embedded emulator starts on a free loopback port");
            println!(
                "EVOLUTION_BASE_URL is not set: running on the embedded emulator at {}.",
                emulator.base_url()
            );
            Self::Embedded(emulator)
        }
    }

    /// The emulator, when embedded.
    pub fn emulator(&self) -> Option<&Emulator> {
        match self {
            Self::Embedded(emulator) => Some(emulator),
            Self::Remote => None,
        }
    }

    /// A builder with the target's URLs, key and model set.
    pub fn builder(&self) -> EvolutionInferenceBuilder {
        match self {
            Self::Remote => EvolutionInferenceBuilder::from_env(),
            Self::Embedded(emulator) => EvolutionInference::builder()
                .model(DEMO_MODEL)
                .key_id(DEMO_KEY_ID)
                .secret(DEMO_SECRET)
                .base_url(emulator.base_url())
                .auth_url(emulator.auth_url()),
        }
    }

    /// The model to ask.
    pub fn model(&self) -> String {
        match self {
            Self::Remote => std::env::var("EVOLUTION_MODEL").unwrap_or_default(),
            Self::Embedded(_) => DEMO_MODEL.to_owned(),
        }
    }

    /// The inference base URL (ending in `/v1`), for examples that build their own stack.
    pub fn base_url(&self) -> String {
        match self {
            Self::Remote => std::env::var("EVOLUTION_BASE_URL").unwrap_or_default(),
            Self::Embedded(emulator) => emulator.base_url(),
        }
    }

    /// The IAM token URL: `EVOLUTION_TOKEN_URL`, else Cloud.ru's.
    pub fn auth_url(&self) -> String {
        match self {
            Self::Remote => std::env::var("EVOLUTION_TOKEN_URL")
                .unwrap_or_else(|_| evolution_token::DEFAULT_AUTH_URL.to_owned()),
            Self::Embedded(emulator) => emulator.auth_url(),
        }
    }

    /// The primary key: `EVOLUTION_KEY_ID` and `EVOLUTION_SECRET`, or the emulator's demo key.
    ///
    /// # Errors
    ///
    /// When a variable is missing.
    pub fn credentials(&self) -> Result<Credentials, TokenError> {
        match self {
            Self::Remote => Credentials::from_env(),
            Self::Embedded(_) => Ok(Credentials::new(DEMO_KEY_ID, DEMO_SECRET)),
        }
    }
}

/// [`Stats`] as a two-column table, one field a line, in the reference's `get_stats()`
/// order: `println!("{}", StatsTable(&llm.stats()))`.
#[derive(Debug)]
pub struct StatsTable<'a>(pub &'a Stats);

impl fmt::Display for StatsTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let rows: [(&str, String); 13] = [
            ("total_requests", s.total_requests.to_string()),
            ("successes", s.successes.to_string()),
            ("auth_errors", s.auth_errors.to_string()),
            ("success_rate", format!("{:.1} %", s.success_rate)),
            ("avg_response_time", millis(s.avg_response_time)),
            ("p50_response_time", millis(s.p50_response_time)),
            ("p99_response_time", millis(s.p99_response_time)),
            ("successful_refreshes", s.successful_refreshes.to_string()),
            ("failed_refreshes", s.failed_refreshes.to_string()),
            ("avg_refresh_time", millis(s.avg_refresh_time)),
            ("using_primary", s.using_primary.to_string()),
            ("retries", s.retries.to_string()),
            ("fallback_switches", s.fallback_switches.to_string()),
        ];
        for (name, value) in rows {
            writeln!(f, "  {name:<22}{value}")?;
        }
        Ok(())
    }
}

/// A duration in milliseconds with two decimals: `12.34 ms`.
pub fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}
