//! A handshake flood from one source: a host opens idle TCP connections to the
//! gateway's and a node's federation port faster than any slot frees up (200 a second
//! for 10 s to each, never a ClientHello, so no certificate is needed), while a
//! registered member keeps making new connections from elsewhere. Without a bound per
//! source the flood holds every handshake slot (256 of them, each up to the handshake
//! timeout: about 51 connects a second did it) and every new federation connection is
//! refused; with it the flooding host holds its share (`max_handshakes_per_source`, 16
//! by default), each for at most the ClientHello timeout (2 s), its other connections
//! are closed on arrival, and the member connects every time.
//!
//! Real gateway and node processes. Everything is on loopback: the flood comes from
//! 127.0.0.2 (Linux routes the whole 127.0.0.0/8 to `lo`), the member from 127.0.0.1,
//! so the listeners see two sources as they would see two hosts. The listeners' own
//! counts (their `/metrics`) show they told them apart: the flood's connections
//! refused for their source, none for a full listener. Figures are printed; the bounds
//! are generous (a shared 2-core machine).

#![allow(clippy::unwrap_used)]

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{io::AsyncReadExt, net::TcpSocket, task::JoinSet};
use tongban_gateway::config::Limits;
use tongban_kit::testing::{TestFederation, channel, processes, start_with};
use tongban_node::portal_client::PortalClient;
use tongban_runtime::trust::{identity::PeerIdentity, tls::TlsFiles};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// Where the flood comes from; the registered member connects from 127.0.0.1.
const FLOOD_FROM: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Idle connects a second to each listener: 2 s × 200 = 400 connections would be
/// waiting for a ClientHello at once, more than the 256 slots, so the ClientHello
/// timeout alone would not keep a slot free: only the per-source share does.
const RATE: u32 = 200;
const FLOOD: Duration = Duration::from_secs(10);
/// How often the member makes a new connection.
const MEMBER_EVERY: Duration = Duration::from_millis(200);
/// A flood connection closed sooner than this was closed on arrival.
const AT_ONCE: Duration = Duration::from_secs(1);

/// What the flooding host saw of one listener.
#[derive(Default)]
struct Flood {
    opened: AtomicU64,
    connect_failed: AtomicU64,
    /// The listener sent bytes to a connection that sent none.
    answered: AtomicU64,
    /// Still open 15 s after the connect.
    left_open: AtomicU64,
    /// Time from the connect to the listener's close, per closed connection.
    closed_after: Mutex<Vec<Duration>>,
}

/// One idle connection from [`FLOOD_FROM`] to `addr`, kept until the listener closes it.
async fn idle_connection(addr: SocketAddr, flood: Arc<Flood>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(FLOOD_FROM.into(), 0))
        .expect("binding 127.0.0.2 (all of 127.0.0.0/8 is loopback on Linux)");
    let t0 = Instant::now();
    let Ok(mut tcp) = socket.connect(addr).await else {
        flood.connect_failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    flood.opened.fetch_add(1, Ordering::Relaxed);
    let mut byte = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(15), tcp.read(&mut byte)).await {
        Ok(Ok(0) | Err(_)) => flood.closed_after.lock().unwrap().push(t0.elapsed()),
        Ok(Ok(_)) => {
            flood.answered.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            flood.left_open.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// [`RATE`] idle connections a second to `addr` until `until`; returns once every one
/// of them is closed or given up on.
async fn flood(addr: SocketAddr, until: Instant) -> Arc<Flood> {
    let flood = Arc::new(Flood::default());
    let mut connections = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE);
    while Instant::now() < until {
        tick.tick().await;
        connections.spawn(idle_connection(addr, flood.clone()));
    }
    while connections.join_next().await.is_some() {}
    flood
}

/// What the registered member saw: time to connect (TCP, TLS handshake, HTTP/2) of
/// each new connection whose health call was answered, and every failure.
#[derive(Default)]
struct Member {
    connected_in: Vec<Duration>,
    failures: Vec<String>,
}

/// A new connection to `addr` presenting `files` every [`MEMBER_EVERY`] until `until`,
/// each asked for its health once.
async fn member(addr: SocketAddr, files: TlsFiles, server: PeerIdentity, until: Instant) -> Member {
    let mut seen = Member::default();
    let url = format!("https://{addr}");
    let mut tick = tokio::time::interval(MEMBER_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < until {
        tick.tick().await;
        let t0 = Instant::now();
        let connection = match channel(&url, &files, &server).await {
            Ok(connection) => connection,
            Err(e) => {
                seen.failures
                    .push(format!("connect after {:?}: {e:?}", t0.elapsed()));
                continue;
            }
        };
        let connected_in = t0.elapsed();
        match HealthClient::new(connection)
            .check(HealthCheckRequest::default())
            .await
        {
            Ok(_) => seen.connected_in.push(connected_in),
            Err(status) => seen.failures.push(format!("health: {status:?}")),
        }
    }
    seen
}

/// `tongban_federation_handshakes_total` by outcome, from the admin listener at `admin`.
async fn handshake_counts(admin: SocketAddr) -> HashMap<String, u64> {
    let scrape = PortalClient::new(format!("http://{admin}"))
        .get("/metrics")
        .await
        .unwrap();
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    let counts: HashMap<String, u64> = scrape
        .body
        .as_str()
        .unwrap()
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("tongban_federation_handshakes_total{outcome=\"")?;
            let (outcome, value) = rest.split_once("\"} ")?;
            Some((outcome.to_owned(), value.parse().ok()?))
        })
        .collect();
    assert!(
        counts.contains_key("refused_per_source"),
        "{admin}/metrics counts no handshakes"
    );
    counts
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted
        .get((sorted.len() * p / 100).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// A federation listener under test: its address, its admin listener, the
/// certificate of a registered caller and the identity the listener presents.
struct Listener {
    name: &'static str,
    addr: SocketAddr,
    admin: SocketAddr,
    caller: TlsFiles,
    server: PeerIdentity,
}

fn listeners(t: &TestFederation) -> [Listener; 2] {
    let region = |p: &str| PeerIdentity::from_uri(&format!("spiffe://tongban/region/{p}")).unwrap();
    let gateway = t.fed.gateway();
    let node = t.fed.node("44").unwrap();
    [
        Listener {
            name: "gateway",
            addr: gateway.federation_addr,
            admin: gateway.admin_addr.unwrap(),
            // A registered node.
            caller: t.tls_files(&region("31")),
            server: PeerIdentity::Gateway,
        },
        Listener {
            name: "node 44",
            addr: node.federation_addr,
            admin: node.admin_addr,
            // The node's caller.
            caller: t.tls_files(&PeerIdentity::Gateway),
            server: region("44"),
        },
    ]
}

/// Prints what one listener went through and checks it held.
fn judge(
    listener: &Listener,
    flood: &Flood,
    member: &Member,
    before: &HashMap<String, u64>,
    after: &HashMap<String, u64>,
) {
    let (name, limits) = (listener.name, Limits::default());
    let counted = |outcome: &str| after[outcome] - before[outcome];
    let mut closed = flood.closed_after.lock().unwrap().clone();
    closed.sort_unstable();
    let at_once: Vec<Duration> = closed.iter().copied().filter(|d| *d < AT_ONCE).collect();
    let held = &closed[at_once.len()..];
    let opened = flood.opened.load(Ordering::Relaxed);
    let mut connected = member.connected_in.clone();
    connected.sort_unstable();
    println!(
        "{name}: flood from {FLOOD_FROM}: {opened} connections opened ({} failed to connect), \
         {} closed on arrival (p99 {:?}), {} held until the ClientHello timeout (at most {:?}), \
         {} left open, {} answered; the listener counted {} refused for their source, {} for a \
         full listener, {} ClientHello timeouts, {} completed handshakes. Registered caller from \
         127.0.0.1: {} new connections served, {} failed, connected in p50 {:?} p99 {:?} (max {:?})",
        flood.connect_failed.load(Ordering::Relaxed),
        at_once.len(),
        percentile(&at_once, 99),
        held.len(),
        held.last().copied().unwrap_or_default(),
        flood.left_open.load(Ordering::Relaxed),
        flood.answered.load(Ordering::Relaxed),
        counted("refused_per_source"),
        counted("refused_busy"),
        counted("client_hello_timeout"),
        counted("completed"),
        connected.len(),
        member.failures.len(),
        percentile(&connected, 50),
        percentile(&connected, 99),
        connected.last().copied().unwrap_or_default(),
    );
    // The member: every new connection made and served, all through the flood.
    assert!(
        member.failures.is_empty(),
        "{name}: the registered caller failed during the flood: {:?}",
        member.failures
    );
    assert!(
        connected.len() >= 10,
        "{name}: only {} connections in {FLOOD:?}",
        connected.len()
    );
    // The flood: no more than its share held at a time, each until the ClientHello
    // timeout (with 2.5 s to spare, well before the 5 s handshake timeout); the rest
    // closed on arrival; none left open, none answered.
    let periods = (FLOOD.as_millis() / limits.client_hello_timeout.as_millis()) as usize + 2;
    let share = limits.max_handshakes_per_source;
    assert!(
        opened >= u64::from(RATE) * 5,
        "{name}: only {opened} flood connections"
    );
    assert_eq!(
        flood.left_open.load(Ordering::Relaxed),
        0,
        "{name}: left open"
    );
    assert_eq!(
        flood.answered.load(Ordering::Relaxed),
        0,
        "{name}: answered"
    );
    assert!(
        held.len() <= share * periods,
        "{name}: {} flood connections held, more than {share} at a time",
        held.len()
    );
    let limit = limits.client_hello_timeout + Duration::from_millis(2500);
    assert!(
        held.iter().all(|d| *d < limit),
        "{name}: a flood connection held {:?}, past the ClientHello timeout",
        held.last()
    );
    assert!(
        at_once.len() as u64 + (share * periods) as u64 >= opened,
        "{name}: only {} of {opened} flood connections closed on arrival",
        at_once.len()
    );
    // The listener saw the flood's own address: it refused those connections for their
    // source (each closed on arrival, and none of the member's), and was never full.
    assert!(
        counted("refused_per_source") >= at_once.len() as u64
            && counted("refused_per_source") <= opened,
        "{name}: the listener counted {} refusals for their source, the flood saw {} of {opened} \
         closed on arrival",
        counted("refused_per_source"),
        at_once.len()
    );
    assert_eq!(counted("refused_busy"), 0, "{name}: the listener was full");
    assert!(counted("completed") >= connected.len() as u64, "{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_flood_from_one_source_leaves_registered_members_connecting() {
    let t = start_with(&["310000", "440000"], |spec| {
        spec.launch = processes("warn");
    })
    .await;
    let listeners = listeners(&t);
    let mut before = Vec::new();
    for listener in &listeners {
        before.push(handshake_counts(listener.admin).await);
    }
    let until = Instant::now() + FLOOD;
    let floods: Vec<_> = listeners
        .iter()
        .map(|l| tokio::spawn(flood(l.addr, until)))
        .collect();
    let members: Vec<_> = listeners
        .iter()
        .map(|l| tokio::spawn(member(l.addr, l.caller.clone(), l.server.clone(), until)))
        .collect();
    let mut seen = Vec::new();
    for (flood, member) in floods.into_iter().zip(members) {
        seen.push((flood.await.unwrap(), member.await.unwrap()));
    }
    for ((listener, (flood, member)), before) in listeners.iter().zip(&seen).zip(&before) {
        let after = handshake_counts(listener.admin).await;
        judge(listener, flood, member, before, &after);
    }
    t.shutdown().await;
}
