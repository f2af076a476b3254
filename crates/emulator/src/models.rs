//! `GET /v1/models`: the configured model ids, OpenAI list format.

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
pub(crate) fn list_body(models: &[String]) -> Bytes {
    let data: Vec<_> = models
        .iter()
        .map(|id| {
            json!({
                "id": id,
                "object": "model",
                "created": CREATED,
                "owned_by": "evolution-emulator",
            })
        })
        .collect();
    Bytes::from(json!({ "object": "list", "data": data }).to_string())
}
