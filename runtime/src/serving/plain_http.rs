//! Serving a router over plain HTTP/1.1 (a node's portal, every admin listener) with
//! what a client may take of the listener bounded: a slow or silent client cannot hold
//! a connection open (slowloris), and a flood of connections cannot take the slots of
//! another listener or of the other clients.
//!
//! Each bound is a library's, set here:
//! - the request head must arrive within [`HttpLimits::header_read_timeout`]: hyper's
//!   `http1` `header_read_timeout` (with Tokio's timer). hyper starts that clock as soon
//!   as it waits for a head, so it also closes a keep-alive connection that sends no next
//!   request in time;
//! - a connection on which nothing moves either way for [`HttpLimits::idle_timeout`] is
//!   closed (a client that stops reading its answer or stops sending a body):
//!   `tokio-io-timeout`'s read and write timeouts on the socket;
//! - a request answered within [`HttpLimits::request_timeout`], its body read included,
//!   or `408`: tower-http's `TimeoutLayer`;
//! - at most [`HttpLimits::max_connections`] open connections, at most
//!   [`HttpLimits::max_connections_per_client`] from one address
//!   ([`super::connection_slots`]); a connection beyond either is closed as it is
//!   accepted, before any byte is read.
//!
//! axum's own `serve` offers none of these settings, so the accept loop is written here,
//! as hyper documents it for servers that configure their connections.

use std::{io, pin::pin, time::Duration};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_io_timeout::TimeoutStream;
use tower_http::timeout::TimeoutLayer;

use crate::{
    process::shutdown::ShutdownSignal,
    serving::connection_slots::{ConnectionSlots, Refusal},
};

/// What one plain HTTP listener grants its clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time a client gets to send a request's line and headers, counted from when the
    /// listener waits for them (after the accept, and after each answer on a keep-alive
    /// connection).
    pub header_read_timeout: Duration,
    /// A connection on which no byte moves either way this long is closed.
    pub idle_timeout: Duration,
    /// Time a whole request may take, its body included, before it is answered `408`.
    pub request_timeout: Duration,
    /// Connections open at once on the listener.
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_connections_per_client: usize,
}

impl HttpLimits {
    /// A node's portal: the province's portal and counters, many clients.
    pub fn portal() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_connections_per_client: 64,
        }
    }

    /// An admin listener: probes, a scraper, an operator; no client may take it.
    pub fn admin() -> Self {
        Self {
            max_connections: 64,
            max_connections_per_client: 8,
            ..Self::portal()
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown`, then waits for the
/// connections still open to finish (each is bounded by the limits). `name` names the
/// listener in logs.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: ShutdownSignal,
) -> io::Result<()> {
    let service = TowerToHyperService::new(router.layer(TimeoutLayer::with_status_code(
        http::StatusCode::REQUEST_TIMEOUT,
        limits.request_timeout,
    )));
    let slots = ConnectionSlots::new(limits.max_connections, limits.max_connections_per_client);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    let mut stop = pin!(shutdown.wait());
    while let Some((stream, peer)) = accept_until(name, &listener, stop.as_mut()).await {
        let slot = match slots.try_take(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                let why = match refusal {
                    Refusal::Full => "the listener's connection cap",
                    Refusal::ClientShare => "the client's share of connections",
                };
                tracing::debug!(listener = name, %peer, "connection closed at accept: {why}");
                continue;
            }
        };
        let connection = graceful.watch(
            http.serve_connection(idle_bounded(stream, limits.idle_timeout), service.clone()),
        );
        tokio::spawn(async move {
            // Held until the connection ends, and dropped with the task if it panics.
            let _slot = slot;
            if let Err(error) = connection.await {
                tracing::debug!(listener = name, %peer, %error, "connection ended");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// `stream` with a read and a write timeout of `idle` each.
pub(crate) fn idle_bounded(
    stream: TcpStream,
    idle: Duration,
) -> TokioIo<std::pin::Pin<Box<TimeoutStream<TcpStream>>>> {
    let mut timed = TimeoutStream::new(stream);
    timed.set_read_timeout(Some(idle));
    timed.set_write_timeout(Some(idle));
    TokioIo::new(Box::pin(timed))
}

/// The next connection `listener` takes, or `None` once `stop` resolves.
pub(crate) async fn accept_until(
    name: &'static str,
    listener: &TcpListener,
    mut stop: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Option<(TcpStream, std::net::SocketAddr)> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => return Some(accepted),
                Err(error) => accept_failed(name, error).await,
            },
            () = &mut stop => return None,
        }
    }
}

/// After a failed accept: a connection that went away before it was taken is nothing;
/// anything else (out of files, say) is logged and the loop pauses so as not to spin,
/// leaving the connection in the backlog to be taken on the next turn.
async fn accept_failed(name: &'static str, error: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(listener = name, %error, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::{
        net::SocketAddr,
        time::{Duration, Instant},
    };

    use axum::{Router, routing::get};
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpSocket, TcpStream},
    };

    use super::{HttpLimits, serve};
    use crate::process::shutdown::Shutdown;

    /// Big enough that loopback's socket buffers cannot take it whole.
    const LARGE: usize = 64 << 20;

    fn limits() -> HttpLimits {
        HttpLimits {
            header_read_timeout: Duration::from_millis(400),
            idle_timeout: Duration::from_millis(1500),
            request_timeout: Duration::from_millis(1000),
            max_connections: 6,
            max_connections_per_client: 3,
        }
    }

    async fn start(limits: HttpLimits) -> (SocketAddr, Shutdown) {
        let router = Router::new()
            .route("/ok", get(|| async { "ok" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            )
            .route("/large", get(|| async { vec![b'x'; LARGE] }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        tokio::spawn(serve("test", listener, router, limits, shutdown.signal()));
        (addr, shutdown)
    }

    /// A connection from the loopback address `127.0.0.<from>`.
    async fn connect(addr: SocketAddr, from: u8) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(([127, 0, 0, from], 0).into()).unwrap();
        socket.connect(addr).await.unwrap()
    }

    /// Reads until the server closes; how long that took, and what came.
    async fn until_closed(stream: &mut TcpStream, limit: Duration) -> (Duration, Vec<u8>) {
        let started = Instant::now();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let read = tokio::time::timeout(limit, stream.read(&mut buf)).await;
            match read.expect("the server closes the connection") {
                Ok(0) | Err(_) => return (started.elapsed(), seen),
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    }

    async fn get_ok(addr: SocketAddr, from: u8) -> String {
        let mut stream = connect(addr, from).await;
        stream
            .write_all(b"GET /ok HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let (_, seen) = until_closed(&mut stream, Duration::from_secs(5)).await;
        String::from_utf8_lossy(&seen).into_owned()
    }

    #[tokio::test]
    async fn a_head_sent_slowly_or_never_is_cut_off_at_the_header_timeout() {
        let (addr, _shutdown) = start(limits()).await;
        let mut silent = connect(addr, 1).await;
        let mut trickling = connect(addr, 1).await;
        let trickle = tokio::spawn(async move {
            let started = Instant::now();
            trickling.write_all(b"GET /ok HTTP/1.1\r\n").await.unwrap();
            // One header line every 100 ms: progress, but never a whole head.
            for i in 0..100 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let line = format!("x-slow-{i}: 1\r\n");
                if trickling.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
            started.elapsed()
        });
        let (silent_for, _) = until_closed(&mut silent, Duration::from_secs(5)).await;
        let trickled_for = trickle.await.unwrap();
        assert!(silent_for < Duration::from_secs(3), "{silent_for:?}");
        assert!(trickled_for < Duration::from_secs(3), "{trickled_for:?}");
        // A keep-alive connection idle after its answer is closed the same way.
        let mut kept = connect(addr, 1).await;
        kept.write_all(b"GET /ok HTTP/1.1\r\nhost: t\r\n\r\n")
            .await
            .unwrap();
        let (kept_for, seen) = until_closed(&mut kept, Duration::from_secs(5)).await;
        assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
        assert!(kept_for < Duration::from_secs(3), "{kept_for:?}");
    }

    #[tokio::test]
    async fn a_client_over_its_share_or_the_cap_is_closed_at_once_and_others_are_served() {
        let (addr, _shutdown) = start(HttpLimits {
            header_read_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(20),
            ..limits()
        })
        .await;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(connect(addr, 2).await);
        }
        // Let the server take them before the next one counts.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut over_share = connect(addr, 2).await;
        let (closed_after, _) = until_closed(&mut over_share, Duration::from_secs(5)).await;
        assert!(closed_after < Duration::from_secs(1), "{closed_after:?}");
        assert!(get_ok(addr, 3).await.starts_with("HTTP/1.1 200"));
        for _ in 0..3 {
            held.push(connect(addr, 4).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut over_cap = connect(addr, 5).await;
        let (closed_after, _) = until_closed(&mut over_cap, Duration::from_secs(5)).await;
        assert!(closed_after < Duration::from_secs(1), "{closed_after:?}");
        drop(held);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(get_ok(addr, 5).await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn a_slow_answer_is_408_and_an_unread_one_is_cut_off_when_idle() {
        let (addr, _shutdown) = start(limits()).await;
        let mut slow = connect(addr, 6).await;
        slow.write_all(b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\n")
            .await
            .unwrap();
        let (_, seen) = until_closed(&mut slow, Duration::from_secs(5)).await;
        assert!(
            String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&seen)
        );
        let mut unread = connect(addr, 7).await;
        unread
            .write_all(b"GET /large HTTP/1.1\r\nhost: t\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(4)).await;
        let (_, seen) = until_closed(&mut unread, Duration::from_secs(5)).await;
        assert!(seen.len() < LARGE, "the whole answer came: {}", seen.len());
    }
}
