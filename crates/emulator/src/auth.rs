//! The bearer-token check in front of the inference routes.

use std::sync::Arc;

use http::{HeaderMap, StatusCode, header};

use crate::exchange::Answer;
use crate::fault::Fault;
use crate::keys::Key;
use crate::route::Route;
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

/// What the key behind the request's bearer token does to a chat or embeddings request,
/// before the route's own latency and faults: the request is counted for the key, whatever
/// its answer (an expired or revoked token still names its key; an unknown one names none);
/// then, for a live token only, the key's latency is waited out (a slow deployment,
/// [`EmulatorBuilder::key_latency`](crate::EmulatorBuilder::key_latency)) and its fault
/// returned (a failing deployment, [`Emulator::set_key_fault`](crate::Emulator::set_key_fault)).
/// Rejects nothing: [`authorize`] does, after.
pub(crate) async fn key_effects(
    shared: &Shared,
    route: Route,
    headers: &HeaderMap,
) -> Option<Fault> {
    let (key, live) = bearer(headers).and_then(|token| shared.tokens.owner(token))?;
    key.count(route);
    // As a real deployment does, a dead token is refused before anything else happens.
    live.ok()?;
    let latency = key.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    key.fault()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
