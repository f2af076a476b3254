//! `GET /v1/models`: the configured models, OpenAI list format with Foundation Models' extras.
//!
//! Each entry carries `owned_by` (the organisation before the slash of an id such as
//! `openai/gpt-oss-120b`, else `evolution-emulator`) and a `metadata` object like the real
//! API's: `type` (`llm`, or `embedder` for an
//! [embedding model](crate::EmulatorBuilder::embedding_model)), `is_billable`,
//! `function_calling`, `structure_output`, plus `reasoning`, which says whether the emulator
//! answers that model with `reasoning_content`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use serde_json::json;

use crate::auth::authorize;
use crate::exchange::{Answer, Exchange};
use crate::route::Route;
use crate::state::Shared;

/// The `created` stamp of every model: fixed, so answers are reproducible.
const CREATED: u64 = 1_700_000_000;

/// The owner of a model id without an organisation prefix.
const OWNER: &str = "evolution-emulator";

/// One model the emulator serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ModelSpec {
    pub(crate) id: String,
    pub(crate) kind: ModelKind,
}

/// What a listed model is, which shapes its `/v1/models` entry and its chat answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ModelKind {
    /// A chat model.
    Chat,
    /// A chat model whose answers and stream deltas carry `reasoning_content`, as a vLLM
    /// reasoning model's do.
    Reasoning,
    /// An embedding model: `metadata.type` is `embedder` in its `/v1/models` entry.
    Embedding,
}

impl ModelSpec {
    pub(crate) fn new(id: impl Into<String>, kind: ModelKind) -> Self {
        ModelSpec {
            id: id.into(),
            kind,
        }
    }

    /// Whether its chat answers carry `reasoning_content`.
    pub(crate) fn reasoning(&self) -> bool {
        self.kind == ModelKind::Reasoning
    }

    /// `openai` for `openai/gpt-oss-120b`; [`OWNER`] for an id without a slash.
    fn owner(&self) -> &str {
        match self.id.split_once('/') {
            Some((owner, _)) if !owner.is_empty() => owner,
            _ => OWNER,
        }
    }
}

pub(crate) async fn list(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let exchange = Exchange::begin(&shared, Route::Models, &request);
    let (parts, _body) = request.into_parts();
    let answer = || match authorize(&shared, &parts.headers) {
        Ok(_) => Answer::ok(shared.models_body.clone()),
        Err(answer) => answer,
    };
    exchange.serve(answer).await
}

/// The 404 for a model not on a configured list, as OpenAI words it.
pub(crate) fn not_found(model: &str) -> Answer {
    Answer::error(
        http::StatusCode::NOT_FOUND,
        &format!("The model `{model}` does not exist or you do not have access to it."),
        Some("model_not_found"),
    )
}

/// The list answer for `models`.
pub(crate) fn list_body(models: &[ModelSpec]) -> Bytes {
    let data: Vec<_> = models
        .iter()
        .map(|model| {
            json!({
                "id": model.id,
                "object": "model",
                "created": CREATED,
                "owned_by": model.owner(),
                "metadata": {
                    "type": if model.kind == ModelKind::Embedding { "embedder" } else { "llm" },
                    "is_billable": true,
                    "function_calling": true,
                    "structure_output": true,
                    "reasoning": model.reasoning(),
                },
            })
        })
        .collect();
    Bytes::from(json!({ "object": "list", "data": data }).to_string())
}
