//! The bearer-token check in front of the inference routes.

use std::sync::Arc;

use http::{HeaderMap, StatusCode, header};

use crate::exchange::Answer;
use crate::keys::Key;
use crate::state::Shared;
use crate::stats::Counters;
use crate::tokens::Rejected;

/// The key behind the request's `Authorization: Bearer <token>`, or the 401 answer.
pub(crate) fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<Arc<Key>, Answer> {
    let token = bearer(headers).ok_or(Rejected::Missing);
    token
        .and_then(|token| shared.tokens.validate(token))
        .inspect(|key| {
            if key.api_key {
                Counters::bump(&shared.counters.api_key_requests);
            }
        })
        .map_err(|rejected| {
            Answer::error(
                StatusCode::UNAUTHORIZED,
                rejected.message(),
                Some("invalid_api_key"),
            )
        })
}

/// Waits out the latency of the key behind the request's token, if it has one (a slow
/// deployment, [`EmulatorBuilder::key_latency`](crate::EmulatorBuilder::key_latency)).
/// Counts nothing and rejects nothing: [`authorize`] does, after.
pub(crate) async fn key_latency(shared: &Shared, headers: &HeaderMap) {
    let key = bearer(headers).and_then(|token| shared.tokens.validate(token).ok());
    if let Some(latency) = key
        .map(|key| key.latency())
        .filter(|latency| !latency.is_zero())
    {
        tokio::time::sleep(latency).await;
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
