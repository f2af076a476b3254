//! Building the client: from the environment, or on an embedded emulator.

use evolution_client::{EvolutionInference, EvolutionInferenceBuilder};
use evolution_emulator::{DEMO_KEY_ID, DEMO_MODEL, DEMO_SECRET, Emulator};

use crate::args::TargetArgs;
use crate::failure::Failure;

const REQUIRED: [&str; 4] = [
    "EVOLUTION_KEY_ID",
    "EVOLUTION_SECRET",
    "EVOLUTION_BASE_URL",
    "EVOLUTION_MODEL",
];

/// A static API key, which stands in for `EVOLUTION_KEY_ID` and `EVOLUTION_SECRET`.
const API_KEY: &str = evolution_client::ENV_API_KEY;

fn is_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|value| !value.trim().is_empty())
}

/// The client's model when none is configured and none is needed.
pub(crate) const NO_MODEL: &str = "(none)";

fn model_is_set() -> bool {
    is_set("EVOLUTION_MODEL")
}

/// A configured client, and the emulator it talks to when embedded.
pub(crate) struct Target {
    pub(crate) client: EvolutionInference,
    /// Kept so the embedded server lives as long as the client (it stops when dropped).
    _emulator: Option<Emulator>,
}

impl Target {
    /// Builds the client the arguments describe; `tune` adjusts the builder.
    pub(crate) async fn build(
        args: &TargetArgs,
        tune: impl FnOnce(EvolutionInferenceBuilder, Option<&Emulator>) -> EvolutionInferenceBuilder,
    ) -> Result<Self, Failure> {
        Self::build_with(args, true, tune).await
    }

    /// As [`build`](Self::build); without `needs_model`, a missing EVOLUTION_MODEL is no
    /// error (the gateway forwards the model each request names) and the client's own model
    /// is [`NO_MODEL`], which no request of the caller's uses.
    pub(crate) async fn build_with(
        args: &TargetArgs,
        needs_model: bool,
        tune: impl FnOnce(EvolutionInferenceBuilder, Option<&Emulator>) -> EvolutionInferenceBuilder,
    ) -> Result<Self, Failure> {
        let (builder, emulator) = if args.emulator {
            let emulator = Emulator::builder().start().await.map_err(|error| {
                Failure::Other(format!("cannot start the embedded emulator: {error}"))
            })?;
            let builder = EvolutionInference::builder()
                .model(DEMO_MODEL)
                .key_id(DEMO_KEY_ID)
                .secret(DEMO_SECRET)
                .base_url(emulator.base_url())
                .auth_url(emulator.auth_url());
            (builder, Some(emulator))
        } else if let Some(path) = &args.config {
            // The file carries the keys; the base URL and model may come from it too, and
            // the build says which is missing.
            let builder = EvolutionInferenceBuilder::from_env().config_file(path);
            let builder = if needs_model || model_is_set() {
                builder
            } else {
                builder.model(NO_MODEL)
            };
            (builder, None)
        } else {
            let builder = EvolutionInferenceBuilder::from_env();
            let api_key = is_set(API_KEY);
            let missing: Vec<&str> = REQUIRED
                .iter()
                .copied()
                .filter(|name| !is_set(name))
                .filter(|name| {
                    !(api_key && (*name == "EVOLUTION_KEY_ID" || *name == "EVOLUTION_SECRET"))
                })
                .filter(|name| {
                    !(*name == "EVOLUTION_MODEL" && (args.model.is_some() || !needs_model))
                })
                .collect();
            if !missing.is_empty() {
                let or_api_key = if missing.contains(&"EVOLUTION_KEY_ID") {
                    format!(" ({API_KEY} may replace the key id and secret)")
                } else {
                    String::new()
                };
                return Err(Failure::Config(format!(
                    "set {}{or_api_key} (in the environment or a .env file), or add --emulator to try the embedded emulator",
                    missing.join(", ")
                )));
            }
            let builder = if needs_model || model_is_set() {
                builder
            } else {
                builder.model(NO_MODEL)
            };
            (builder, None)
        };
        let mut builder = tune(builder, emulator.as_ref());
        if let Some(model) = &args.model {
            builder = builder.model(model);
        }
        Ok(Self {
            client: builder.build()?,
            _emulator: emulator,
        })
    }
}
