//! The accept loop: HTTP/1.1 and HTTP/2 (cleartext or TLS) with a header read timeout, and a
//! graceful shutdown that lets calls and streams in flight finish, up to a deadline.

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

/// What ending the serve loop looked like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every connection finished within the drain deadline.
    Clean,
    /// The deadline passed with this many connections still open; they were cut.
    Cut(usize),
}

/// The first bytes an HTTP/2 client sends without negotiation (h2c prior knowledge).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

pub(crate) struct Server {
    pub(crate) router: Router,
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) header_read_timeout: Duration,
    pub(crate) drain_timeout: Duration,
    /// Streams one HTTP/2 client may open at once: as many as may be in flight, so that
    /// multiplexing clients meet the same limit (and the same 503) as everyone else rather
    /// than hyper's default of 200, past which their requests would queue unseen.
    pub(crate) max_streams_per_connection: u32,
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
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.max_streams_per_connection);
        let graceful = GracefulShutdown::new();
        // Owned here, not detached: at the drain deadline what is still open is cut.
        let mut connections = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => {
                        let connection = self.connection(stream, builder.clone(), graceful.watcher());
                        connections.spawn(connection);
                    }
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                () = &mut shutdown => break,
            }
        }
        // Stop accepting: new connections are refused from here on.
        drop(listener);
        tracing::info!(
            open_connections = connections.len(),
            drain_timeout = ?self.drain_timeout,
            "shutting down: finishing calls in flight"
        );
        // Ends keep-alive and sends HTTP/2 GOAWAY; answers in progress run on.
        let signalled = graceful.shutdown();
        let drained = timeout(self.drain_timeout, async {
            signalled.await;
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_ok() {
            return Ok(Drained::Clean);
        }
        while connections.try_join_next().is_some() {}
        let open = connections.len();
        connections.abort_all();
        if open == 0 {
            Ok(Drained::Clean)
        } else {
            Ok(Drained::Cut(open))
        }
    }

    /// One connection, from its first byte (or TLS handshake) to its end.
    fn connection(
        &self,
        stream: TcpStream,
        builder: auto::Builder<TokioExecutor>,
        watcher: Watcher,
    ) -> impl Future<Output = ()> + Send + 'static {
        // Small answers and stream chunks must leave at once.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(self.router.clone());
        let tls = self.tls.clone();
        let limit = self.header_read_timeout;
        async move {
            match tls {
                None => {
                    // hyper-util's own HTTP/1-or-2 sniff has no timer: bounded here, as
                    // the headers are after it, so a client that sends nothing is dropped.
                    let protocol = match timeout(limit, sniff(&stream)).await {
                        Ok(Ok(Some(protocol))) => protocol,
                        _ => return,
                    };
                    serve(stream, protocol, builder, service, watcher).await;
                }
                Some(acceptor) => {
                    // The handshake is bounded like the headers.
                    let stream = match timeout(limit, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            tracing::debug!(%error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let protocol = match stream.get_ref().1.alpn_protocol() {
                        Some(b"h2") => Protocol::Http2,
                        _ => Protocol::Http1,
                    };
                    serve(stream, protocol, builder, service, watcher).await;
                }
            }
        }
    }
}

async fn serve<I>(
    io: I,
    protocol: Protocol,
    builder: auto::Builder<TokioExecutor>,
    service: TowerToHyperService<Router>,
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let builder = match protocol {
        Protocol::Http1 => builder.http1_only(),
        Protocol::Http2 => builder.http2_only(),
    };
    let connection = builder.serve_connection(TokioIo::new(io), service);
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// Which protocol the client speaks: HTTP/2 if it opens with the h2c preface, else
/// HTTP/1.1; `None` if it closes first. Reads nothing (peeks), so hyper sees every byte.
async fn sniff(stream: &TcpStream) -> io::Result<Option<Protocol>> {
    let mut buffer = [0_u8; H2_PREFACE.len()];
    loop {
        let seen = stream.peek(&mut buffer).await?;
        if seen == 0 {
            return Ok(None);
        }
        if buffer[..seen] != H2_PREFACE[..seen] {
            return Ok(Some(Protocol::Http1));
        }
        if seen == H2_PREFACE.len() {
            return Ok(Some(Protocol::Http2));
        }
        // A prefix of the preface, sent in pieces: `peek` would answer the same bytes at
        // once, so wait a little for more (the caller's timeout bounds this).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
