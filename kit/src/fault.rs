//! A fault proxy for one network link of a local federation: a TCP relay on loopback
//! that can pass traffic, delay it, cut the link (every connection reset, new ones
//! refused) or blackhole it (connections stay open, bytes vanish, no RST), switched
//! at any time. Fault tests put one on each link they want to break; TLS passes through
//! untouched (the peers verify names, not addresses).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, tcp::OwnedReadHalf, tcp::OwnedWriteHalf},
    sync::watch,
    task::JoinHandle,
};

/// What the link does to its traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkMode {
    /// Bytes pass as they come.
    Pass,
    /// Every chunk waits this long before it is passed on, in each direction.
    Delay(Duration),
    /// Open connections are reset and new ones are reset on arrival.
    Cut,
    /// Connections are accepted and kept, but nothing passes in either direction (and
    /// no new connection reaches the far side): packets vanish, as on a dead route.
    Blackhole,
}

/// A running fault proxy; it stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    mode: watch::Sender<LinkMode>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on `listener` and relays to `upstream`.
    pub fn start(listener: TcpListener, upstream: SocketAddr) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (mode, modes) = watch::channel(LinkMode::Pass);
        let task = tokio::spawn(accept_loop(listener, upstream, Arc::new(modes)));
        Ok(Self {
            addr,
            upstream,
            mode,
            task,
        })
    }

    /// Where callers connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where traffic goes.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    pub fn set(&self, mode: LinkMode) {
        self.mode.send_replace(mode);
    }

    pub fn mode(&self) -> LinkMode {
        *self.mode.borrow()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    modes: Arc<watch::Receiver<LinkMode>>,
) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let modes = modes.as_ref().clone();
        tokio::spawn(async move {
            let _ = inbound.set_nodelay(true);
            let mode = *modes.borrow();
            match mode {
                LinkMode::Cut => reset(inbound),
                LinkMode::Blackhole => swallow(inbound, modes).await,
                LinkMode::Pass | LinkMode::Delay(_) => match TcpStream::connect(upstream).await {
                    Ok(outbound) => {
                        let _ = outbound.set_nodelay(true);
                        relay(inbound, outbound, modes).await;
                    }
                    // The far side is down: the caller sees its connection refused.
                    Err(_) => reset(inbound),
                },
            }
        });
    }
}

/// Closes with RST (linger 0), as a cut link or a refusing host does.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Reads and discards until the link is cut or the peer closes.
async fn swallow(mut stream: TcpStream, mut modes: watch::Receiver<LinkMode>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            changed = modes.changed() => {
                if changed.is_err() || *modes.borrow() == LinkMode::Cut {
                    return reset(stream);
                }
            }
        }
    }
}

async fn relay(inbound: TcpStream, outbound: TcpStream, modes: watch::Receiver<LinkMode>) {
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let ((in_read, out_write, cut_up), (out_read, in_write, cut_down)) = tokio::join!(
        pump(in_read, out_write, modes.clone()),
        pump(out_read, in_write, modes)
    );
    // A cut link resets both sides, so neither peer waits for a FIN that never comes.
    if cut_up || cut_down {
        if let Ok(stream) = in_read.reunite(in_write) {
            reset(stream);
        }
        if let Ok(stream) = out_read.reunite(out_write) {
            reset(stream);
        }
    }
}

/// One direction, until its end of stream or the link is cut (then `true`).
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut modes: watch::Receiver<LinkMode>,
) -> (OwnedReadHalf, OwnedWriteHalf, bool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return (from, to, false);
                }
                Ok(n) => n,
            },
            changed = modes.changed() => {
                if changed.is_err() || *modes.borrow() == LinkMode::Cut {
                    return (from, to, true);
                }
                continue;
            }
        };
        let mode = *modes.borrow();
        match mode {
            LinkMode::Pass => {}
            LinkMode::Delay(d) => tokio::time::sleep(d).await,
            LinkMode::Blackhole => continue,
            LinkMode::Cut => return (from, to, true),
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return (from, to, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn proxy() -> FaultProxy {
        let upstream = echo_server().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        FaultProxy::start(listener, upstream).unwrap()
    }

    async fn round_trip(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
        stream.write_all(b"ping").await.ok()?;
        let mut buf = [0u8; 4];
        tokio::time::timeout(within, stream.read_exact(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(buf.to_vec())
    }

    #[tokio::test]
    async fn passes_delays_blackholes_and_cuts() {
        let proxy = proxy().await;
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(
            round_trip(&mut s, Duration::from_secs(2)).await.as_deref(),
            Some(&b"ping"[..])
        );

        proxy.set(LinkMode::Delay(Duration::from_millis(150)));
        let started = std::time::Instant::now();
        assert!(round_trip(&mut s, Duration::from_secs(2)).await.is_some());
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );

        proxy.set(LinkMode::Blackhole);
        assert_eq!(round_trip(&mut s, Duration::from_millis(300)).await, None);
        // A new connection is accepted, but nothing comes back.
        let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(
            round_trip(&mut fresh, Duration::from_millis(300)).await,
            None
        );

        proxy.set(LinkMode::Cut);
        let mut buf = [0u8; 4];
        let read = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");

        proxy.set(LinkMode::Pass);
        let mut healed = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(
            round_trip(&mut healed, Duration::from_secs(2))
                .await
                .is_some()
        );
    }
}
