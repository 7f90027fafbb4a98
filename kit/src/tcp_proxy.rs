//! Several gateway replicas behind one address, as a load balancer puts them: a TCP
//! relay on loopback handing each connection to the next backend in turn, skipping
//! backends that refuse. Raw bytes pass through (TLS untouched: clients verify names,
//! not addresses).

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};

/// A backend that neither accepts nor refuses within this is skipped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A running round-robin proxy; it stops, with its open connections, when dropped.
pub struct TcpProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    /// Each backend with the connections it has been handed.
    backends: Mutex<Vec<(SocketAddr, u64)>>,
    next: AtomicUsize,
}

impl Shared {
    fn backends(&self) -> std::sync::MutexGuard<'_, Vec<(SocketAddr, u64)>> {
        // The counts stay meaningful even if a holder panicked.
        self.backends.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl TcpProxy {
    /// Listens on 127.0.0.1 (a free port) and relays to `backends`. Call it within a
    /// Tokio runtime: the relay runs as its tasks.
    pub fn start(backends: Vec<SocketAddr>) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            backends: Mutex::new(backends.into_iter().map(|a| (a, 0)).collect()),
            next: AtomicUsize::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Self { addr, shared, task })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the backends for new connections (open ones stay where they are). A
    /// backend already listed keeps its count; a new one starts at 0.
    pub fn set_backends(&self, backends: Vec<SocketAddr>) {
        let mut current = self.shared.backends();
        *current = backends
            .into_iter()
            .map(|a| {
                let count = current.iter().find(|(b, _)| *b == a).map_or(0, |(_, n)| *n);
                (a, count)
            })
            .collect();
    }

    /// The connections handed to each backend so far, in the order of the backends.
    pub fn connections(&self) -> Vec<u64> {
        self.shared.backends().iter().map(|(_, n)| *n).collect()
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        // The accept loop owns the connections' JoinSet: aborting it ends them too.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let shared = shared.clone();
        connections.spawn(async move {
            let _ = client.set_nodelay(true);
            // No backend accepts: `client` drops here, closing the connection.
            if let Some(backend) = connect_next(&shared).await {
                let _ = backend.set_nodelay(true);
                let (mut client, mut backend) = (client, backend);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
            }
        });
    }
}

/// Connects to the next backend in turn, or the one after when it refuses, and so on
/// once around; counts the connection for the backend that took it.
async fn connect_next(shared: &Shared) -> Option<TcpStream> {
    let start = shared.next.fetch_add(1, Ordering::Relaxed);
    let backends: Vec<SocketAddr> = shared.backends().iter().map(|(a, _)| *a).collect();
    for i in 0..backends.len() {
        let addr = backends[(start + i) % backends.len()];
        if let Ok(Ok(stream)) =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await
        {
            // Found by address: the list may have been replaced meanwhile.
            if let Some((_, n)) = shared.backends().iter_mut().find(|(a, _)| *a == addr) {
                *n += 1;
            }
            return Some(stream);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    /// Connects through the proxy and checks bytes come back.
    async fn echo_through(proxy: &TcpProxy) {
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
    }

    /// A loopback address nothing listens on.
    async fn refusing() -> SocketAddr {
        TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
    }

    #[tokio::test]
    async fn connections_reach_every_backend_in_turn() {
        let backends = vec![
            echo_server().await,
            echo_server().await,
            echo_server().await,
        ];
        let proxy = TcpProxy::start(backends).unwrap();
        for _ in 0..3 {
            echo_through(&proxy).await;
        }
        assert_eq!(proxy.connections(), vec![1, 1, 1]);
    }

    #[tokio::test]
    async fn refusing_backends_are_skipped() {
        let (down, up) = (refusing().await, echo_server().await);
        let proxy = TcpProxy::start(vec![down, up]).unwrap();
        for _ in 0..2 {
            echo_through(&proxy).await;
        }
        assert_eq!(proxy.connections(), vec![0, 2]);

        // None accepts: the client is closed.
        proxy.set_backends(vec![down]);
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut buf = [0u8; 1];
        assert!(matches!(s.read(&mut buf).await, Ok(0) | Err(_)));
    }
}
