//! `GET /healthz` (the process answers), `GET /readyz` (it can call upstream), `GET /metrics`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use http::header::CONTENT_TYPE;
use serde_json::json;

use evolution_client::pool::{DeploymentState, DeploymentStatus};

use crate::Gateway;
use crate::error::ApiError;

/// How long `/readyz` waits for a token before saying not ready (a probe's own timeout is
/// usually a few seconds).
const READY_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// 200 when a token for the key in use is held or can be obtained; else 503 and why.
///
/// With a pool of deployments, the key in use is the first deployment that is healthy or
/// due for its probe, and the answer lists every deployment's state; when every one is
/// cooling, 503 names their states (until the soonest's cooldown ends).
pub(crate) async fn readyz(State(gateway): State<Gateway>) -> Response {
    let client = &gateway.inner.client;
    let mut report = serde_json::Map::new();
    let manager = if let Some(pool) = client.pool() {
        let statuses = pool.deployments();
        let listed: Vec<_> = statuses
            .iter()
            .map(|d| {
                json!({
                    "name": &*d.name,
                    "state": d.state.as_str(),
                    "reason": d.reason.map(|r| r.as_str()),
                    "ready_in_secs": d.ready_in.map(|t| t.as_secs_f64()),
                    "in_flight": d.in_flight,
                })
            })
            .collect();
        // Healthy, or cooled down with its probe due (no call has come to probe it yet: a
        // replica taken out of the balancer for it would never get one).
        let servable = |d: &DeploymentStatus| {
            d.state == DeploymentState::Healthy || d.ready_in.is_some_and(|t| t.is_zero())
        };
        let Some(index) = statuses.iter().position(servable) else {
            let states: Vec<String> = statuses
                .iter()
                .map(|d| format!("`{}` {}", d.name, d.state))
                .collect();
            return ApiError::unavailable(format!(
                "no deployment can serve: {}",
                states.join(", ")
            ))
            .into_response();
        };
        report.insert("deployment".into(), json!(&*statuses[index].name));
        report.insert("deployments".into(), json!(listed));
        client.deployments()[index].token_manager()
    } else {
        match client.backup_token_manager() {
            Some(backup) if !client.using_primary() => backup,
            _ => client.token_manager(),
        }
    };
    let key_id = manager.key_id();
    match tokio::time::timeout(READY_TIMEOUT, manager.get_token()).await {
        Ok(Ok(token)) => {
            report.insert("status".into(), json!("ready"));
            report.insert("key_id".into(), json!(&*key_id));
            report.insert(
                "token_expires_in_secs".into(),
                json!(token.expires_in().as_secs()),
            );
            Json(serde_json::Value::Object(report)).into_response()
        }
        Ok(Err(error)) => {
            ApiError::unavailable(format!("no Evolution token for key `{key_id}`: {error}"))
                .into_response()
        }
        Err(_) => ApiError::unavailable(format!(
            "no Evolution token for key `{key_id}` within {READY_TIMEOUT:?}: IAM is slow or unreachable"
        ))
        .into_response(),
    }
}

pub(crate) async fn metrics(State(gateway): State<Gateway>) -> Response {
    match &gateway.inner.prometheus {
        Some(handle) => {
            let mut answer = handle.render().into_response();
            answer.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            answer
        }
        None => ApiError::new(
            http::StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_route",
            "this gateway was built without a Prometheus exporter",
        )
        .into_response(),
    }
}
