//! The accept loop: HTTP/1.1 and HTTP/2 (cleartext or TLS) with a header read timeout, and a
//! graceful shutdown that lets calls and streams in flight finish, up to a deadline.

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// What ending the serve loop looked like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every connection finished within the drain deadline.
    Clean,
    /// The deadline passed with this many connections still open; they were cut.
    Cut(usize),
}

pub(crate) struct Server {
    pub(crate) router: Router,
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) header_read_timeout: Duration,
    pub(crate) drain_timeout: Duration,
}

impl Server {
    pub(crate) async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<Drained> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .keep_alive(true);
        builder.http2().timer(TokioTimer::new());
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => self.spawn(stream, &builder, &graceful),
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                () = &mut shutdown => break,
            }
        }
        // Stop accepting: new connections are refused from here on.
        drop(listener);
        let open = graceful.count();
        tracing::info!(
            open_connections = open,
            drain_timeout = ?self.drain_timeout,
            "shutting down: finishing calls in flight"
        );
        match tokio::time::timeout(self.drain_timeout, graceful.shutdown()).await {
            Ok(()) => Ok(Drained::Clean),
            Err(_) => Ok(Drained::Cut(open)),
        }
    }

    fn spawn(
        &self,
        stream: TcpStream,
        builder: &auto::Builder<TokioExecutor>,
        graceful: &GracefulShutdown,
    ) {
        // Small answers and stream chunks must leave at once.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(self.router.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        match &self.tls {
            None => {
                tokio::spawn(async move {
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned();
                    if let Err(error) = watcher.watch(connection).await {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let handshake_timeout = self.header_read_timeout;
                tokio::spawn(async move {
                    // The handshake is bounded like the headers: a client that opens a
                    // connection and says nothing must not hold it.
                    let stream = match tokio::time::timeout(
                        handshake_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            tracing::debug!(%error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned();
                    if let Err(error) = watcher.watch(connection).await {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                });
            }
        }
    }
}
