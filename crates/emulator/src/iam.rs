//! `POST /api/v1/auth/token`: exchange an access key for a bearer token.
//!
//! The request must be `content-type: application/json` with a body of exactly
//! `{"keyId": "...", "secret": "..."}`. The answer mirrors Cloud.ru IAM:
//! `{"access_token", "expires_in", "token_type": "Bearer", "refresh_token": "", "id_token",
//! "scope", "not-before-policy"}` (Keycloak's token answer, which Cloud.ru IAM's follows).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};

use crate::exchange::{Answer, Exchange, read_body};
use crate::keys::Refused;
use crate::route::Route;
use crate::state::Shared;
use crate::stats::Counters;

/// The `scope` of every issued token.
const SCOPE: &str = "openid profile email";

pub(crate) async fn token(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let exchange = Exchange::begin(&shared, Route::Iam, &request);
    let (parts, body) = request.into_parts();
    let credentials = match read_body(body).await {
        Ok(body) => parse(&shared.counters, &parts.headers, &body),
        Err(answer) => Err(answer),
    };
    exchange.serve(|| issue(&shared, credentials)).await
}

/// Credentials from a well-formed request (no `Debug`: it holds the secret).
struct Credentials {
    key_id: String,
    secret: String,
}

fn issue(shared: &Shared, credentials: Result<Credentials, Answer>) -> Answer {
    let credentials = match credentials {
        Ok(credentials) => credentials,
        Err(answer) => return answer,
    };
    let key = match shared
        .keys
        .authenticate(&credentials.key_id, &credentials.secret)
    {
        Ok(key) => key,
        Err(Refused::BadCredentials) => {
            return Answer::error(
                StatusCode::UNAUTHORIZED,
                "invalid key id or secret",
                Some("invalid_credentials"),
            );
        }
        Err(Refused::Disabled) => {
            return Answer::error(
                StatusCode::UNAUTHORIZED,
                "access key is disabled",
                Some("key_disabled"),
            );
        }
    };
    let ttl = shared.ttl();
    let issued = shared.tokens.issue(key, ttl);
    Counters::bump(&shared.counters.tokens_issued);
    let body = json!({
        "access_token": issued.access_token,
        "expires_in": ttl.as_secs(),
        "token_type": "Bearer",
        "refresh_token": "",
        "id_token": issued.id_token,
        "scope": SCOPE,
        "not-before-policy": 0,
    });
    Answer::ok(Bytes::from(body.to_string()))
}

/// Parse and check the request; a `keyId` is counted even when the rest is invalid.
fn parse(counters: &Counters, headers: &HeaderMap, body: &[u8]) -> Result<Credentials, Answer> {
    let invalid = |message: &str| Answer::error(StatusCode::BAD_REQUEST, message, None);
    let object = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => Some(fields),
        _ => None,
    };
    if let Some(Value::String(key_id)) = object.as_ref().and_then(|fields| fields.get("keyId")) {
        counters.iam_key(key_id);
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(invalid("content-type must be application/json"));
    }
    let Some(fields) = object else {
        return Err(invalid("body must be a JSON object"));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|name| *name != "keyId" && *name != "secret")
    {
        return Err(invalid(&format!("unknown field `{unknown}`")));
    }
    let field = |name: &str| match fields.get(name) {
        Some(Value::String(value)) => Ok(value.clone()),
        Some(_) => Err(invalid(&format!("`{name}` must be a string"))),
        None => Err(invalid(&format!("missing field `{name}`"))),
    };
    Ok(Credentials {
        key_id: field("keyId")?,
        secret: field("secret")?,
    })
}
