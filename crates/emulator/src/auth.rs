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

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
