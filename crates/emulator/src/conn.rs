//! One connection (HTTP/1.1, or also h2c behind [`EmulatorBuilder::http2`]), and the switch a
//! handler pulls to drop it without answering.
//!
//! [`EmulatorBuilder::http2`]: crate::EmulatorBuilder::http2

use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;

use axum::Router;
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tower::Service as _;

/// Drops the connection a request arrived on. Every request carries one in its extensions.
///
/// A handler cannot close its own connection: it can only answer. Pulling this switch makes the
/// task driving the connection drop it (on HTTP/2, with every stream it carries) — the TCP socket closes with no (or only part of an)
/// answer sent — which also drops the handler's future.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnectionCloser {
    notify: Arc<Notify>,
}

impl ConnectionCloser {
    pub(crate) fn close(&self) {
        // `notify_one` keeps a permit if the connection task is not waiting at this instant.
        self.notify.notify_one();
    }

    async fn closed(&self) {
        self.notify.notified().await;
    }
}

/// Which protocols a connection speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// HTTP/1.1 only.
    #[default]
    Http1,
    /// HTTP/1.1 or HTTP/2 cleartext with prior knowledge (h2c), told apart by the first bytes
    /// the client sends.
    Auto,
}

/// Serve `stream` until the client closes it, a handler pulls the [`ConnectionCloser`], or
/// `shutdown` fires (then in-flight requests finish and the connection closes).
pub(crate) async fn serve(
    stream: TcpStream,
    router: Router,
    shutdown: watch::Receiver<bool>,
    protocol: Protocol,
) {
    // Small answers and SSE events must leave at once.
    let _ = stream.set_nodelay(true);
    let closer = ConnectionCloser::default();
    let service = ConnectionService {
        router,
        closer: closer.clone(),
    };
    let io = TokioIo::new(stream);
    match protocol {
        Protocol::Http1 => {
            let mut builder = http1::Builder::new();
            // No timers on idle connections: a paused-clock test would see them fire as time
            // jumps.
            builder.header_read_timeout(None).keep_alive(true);
            let connection = pin!(builder.serve_connection(io, service));
            drive(
                connection,
                http1::Connection::graceful_shutdown,
                &closer,
                shutdown,
            )
            .await;
        }
        Protocol::Auto => {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http1().header_read_timeout(None).keep_alive(true);
            // hyper's default of 200 streams per connection would queue a client's 201st
            // request: benches hold thousands of slow streams open on one connection. No
            // keep-alive pings, for the same paused-clock reason as above.
            builder.http2().max_concurrent_streams(None);
            let connection = pin!(builder.serve_connection(io, service));
            drive(
                connection,
                auto::Connection::graceful_shutdown,
                &closer,
                shutdown,
            )
            .await;
        }
    }
}

/// Poll `connection` to its end, dropping it when `closer` is pulled and starting its graceful
/// shutdown (`graceful`) when `shutdown` fires.
async fn drive<C, E>(
    mut connection: Pin<&mut C>,
    graceful: impl Fn(Pin<&mut C>),
    closer: &ConnectionCloser,
    mut shutdown: watch::Receiver<bool>,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut draining = false;
    loop {
        tokio::select! {
            biased;
            () = closer.closed() => {
                tracing::debug!("dropping connection (injected fault)");
                return;
            }
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = crate::server::stopped(&mut shutdown), if !draining => {
                graceful(connection.as_mut());
                draining = true;
            }
        }
    }
}

/// Hands requests to the router with the connection's closer attached, and logs each one.
#[derive(Clone, Debug)]
struct ConnectionService {
    router: Router,
    closer: ConnectionCloser,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl hyper::service::Service<http::Request<Incoming>> for ConnectionService {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture;

    fn call(&self, mut request: http::Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(self.closer.clone());
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        // `Router` is always ready, so `call` without `poll_ready` is fine.
        let answer = self.router.clone().call(request);
        Box::pin(async move {
            let started = Instant::now();
            let response = answer.await?;
            tracing::debug!(
                %method,
                path,
                status = response.status().as_u16(),
                micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                "request"
            );
            Ok(response)
        })
    }
}
