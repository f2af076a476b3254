//! In front of every route: who may call (`/v1/*` only), whether there is room, and the
//! request's place in the gateway's metrics until its answer ends.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{AUTHORIZATION, CONTENT_TYPE};

use crate::Gateway;
use crate::error::ApiError;
use crate::proxy::X_REQUEST_ID;
use crate::telemetry::{InFlight, Tracked, route_of};

pub(crate) async fn admit(
    State(gateway): State<Gateway>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let route = route_of(path);
    let mut in_flight = InFlight::start(route);
    if path.starts_with("/v1/") {
        if let Err(error) = authorize(&gateway, &request) {
            return finish(error.into_response(), in_flight);
        }
        // Shed rather than queue: a queue in front of a slow upstream only adds latency
        // until clients time out; a 503 with Retry-After lets them (or a balancer) go
        // elsewhere at once.
        match gateway.inner.slots.clone().try_acquire_owned() {
            Ok(permit) => in_flight.hold(permit),
            Err(_) => {
                let error = ApiError::overloaded(gateway.inner.config.max_in_flight);
                return finish(error.into_response(), in_flight);
            }
        }
    }
    let request_id = request.headers().get(X_REQUEST_ID).cloned();
    let response = next.run(request).await;
    tracing::debug!(
        request_id = request_id.as_ref().and_then(|id| id.to_str().ok()),
        route,
        status = response.status().as_u16(),
        "answered"
    );
    finish(response, in_flight)
}

fn authorize(gateway: &Gateway, request: &Request) -> Result<(), ApiError> {
    let keys = &gateway.inner.config.keys;
    if keys.is_empty() {
        return Ok(());
    }
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, key) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
        });
    match presented {
        Some(key) if keys.accepts(key) => Ok(()),
        Some(_) => Err(ApiError::invalid_api_key(true)),
        None => Err(ApiError::invalid_api_key(false)),
    }
}

/// The answer, carrying the request's [`InFlight`] until its body ends.
fn finish(response: Response, mut in_flight: InFlight) -> Response {
    let streamed = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"));
    in_flight.answered(response.status(), streamed);
    response.map(|body| Body::new(Tracked::new(body, in_flight)))
}
