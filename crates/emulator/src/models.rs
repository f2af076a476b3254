//! `GET /v1/models`: the configured models, OpenAI list format with Foundation Models' extras.
//!
//! Each entry carries `owned_by` (the organisation before the slash of an id such as
//! `openai/gpt-oss-120b`, else `evolution-emulator`) and a `metadata` object like the real
//! API's: `type`, `is_billable`, `function_calling`, `structure_output`, plus `reasoning`,
//! which says whether the emulator answers that model with `reasoning_content`.

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
    /// Whether its answers and stream deltas carry `reasoning_content`, as a vLLM reasoning
    /// model's do.
    pub(crate) reasoning: bool,
}

impl ModelSpec {
    pub(crate) fn new(id: impl Into<String>, reasoning: bool) -> Self {
        ModelSpec {
            id: id.into(),
            reasoning,
        }
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
                    "type": "llm",
                    "is_billable": true,
                    "function_calling": true,
                    "structure_output": true,
                    "reasoning": model.reasoning,
                },
            })
        })
        .collect();
    Bytes::from(json!({ "object": "list", "data": data }).to_string())
}
