//! The router and the accept loop.
//!
//! The loop is ours rather than `axum::serve` so each connection can be dropped on purpose (see
//! [`ConnectionCloser`](crate::conn::ConnectionCloser)).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};

use crate::conn::Protocol;
use crate::state::Shared;
use crate::{chat, conn, control, embeddings, error, iam, models};

/// How long shutdown waits for in-flight requests before cutting them off.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v1/auth/token", post(iam::token))
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/v1/models", get(models::list))
        .route("/_emulator/stats", get(control::stats))
        .route("/_emulator/control", post(control::control))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(shared)
}

/// Accept connections until `shutdown` says stop (or its sender is dropped), then let in-flight
/// requests finish for up to [`DRAIN_TIMEOUT`].
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: watch::Receiver<bool>,
    protocol: Protocol,
) {
    let mut connections = JoinSet::new();
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(conn::serve(stream, router.clone(), shutdown.clone(), protocol));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = stopped(&mut stop) => break,
        }
    }
    drop(listener);
    let drained = timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        connections.abort_all();
    }
}

/// Completes when shutdown is asked for, or when every handle is gone.
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // Either outcome means stop; the borrowed value must not live across an await.
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}
