//! Slowloris at a node's portal (issue 20, item 2), with real processes: the node runs
//! at an open-files limit of 1,024 (soft and hard, so it cannot raise it), the limit at
//! which 1,100 slow connections used to keep the portal and the admin listener's
//! `/readyz` from answering for the whole attack.
//!
//! For `ATTACK_FOR` a flood keeps 1,100 connections from 20 addresses (55 each, within
//! a client's share, so only the listener's cap and the header timeout stand in their
//! way) and 100 from one more address (over its share) trickling a request head, one
//! header line a second: each line comes in time, so only a deadline on the whole head
//! ends them. Each connection closed is opened again half a second later. Meanwhile
//! `/readyz` on the admin listener is asked every 200 ms on a new connection, as a
//! kubelet probe does, and a filing is made at the portal; after the attack another.
//!
//! Shown: every slow connection is closed by the node (at once beyond a cap or a
//! share, else after about the header-read timeout) and none is left open; every
//! `/readyz` answers 200; the node never holds more files than its limit allows; both
//! filings are receipted. Bounds on times are generous (the machine is shared); the
//! figures are printed.

#![allow(clippy::unwrap_used)]

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    task::JoinSet,
};
use tongban_kit::{
    Launch, Member,
    testing::{TestFederation, medical_filing, processes, start_with},
};
use tongban_node::{config::ListenerLimits, portal_client::PortalClient};
use tongban_runtime::process::open_files;

/// The node's open-files limit, as in the report.
const NODE_OPEN_FILES: u64 = 1024;
/// The test node's header-read timeout (10 s by default).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the flood goes on.
const ATTACK_FOR: Duration = Duration::from_secs(12);
/// The flood within each client's share: this many addresses, this many connections
/// from each.
const SPREAD: (u8, usize) = (20, 55);
/// And from one address, over its share of 64.
const ONE_HOST: usize = 100;
/// A head line every second: in time for any header deadline the node could set per
/// line.
const TRICKLE: Duration = Duration::from_secs(1);
/// Closed within this of its accept: closed at once, beyond a cap or a share.
const AT_ONCE: Duration = Duration::from_millis(500);

/// How one slow connection ended.
#[derive(Clone, Copy, Debug)]
enum Ended {
    /// The node closed it after this long.
    Closed(Duration),
    /// The connect itself failed (the node's backlog full, say).
    NotConnected,
    /// Still open when the attacker gave up on it (after a minute).
    StillOpen,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_the_admin_listener_answers_throughout() {
    // The flood's sockets are this process's files: every connection of the flood may
    // be open at once.
    let own = open_files::raise_to(4096);
    let flood = SPREAD.0 as usize * SPREAD.1 + ONE_HOST;
    assert!(
        own.is_none_or(|limit| limit >= flood as u64 + 512),
        "this test opens {flood} connections; its open-files limit is {own:?}"
    );
    let bins = limited_binaries(NODE_OPEN_FILES);
    let mut t = start_with(&["310000", "440000"], |spec| {
        spec.launch = Launch::Processes {
            bin_dir: bins.path().to_owned(),
            log: "warn".into(),
        };
        spec.node_listener_limits = ListenerLimits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            idle_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(10),
            ..ListenerLimits::default()
        };
    })
    .await;
    let node = t.fed.node("31").unwrap();
    let (portal, admin) = (node.portal_addr, node.admin_addr);
    let pid = t.fed.pid(&Member::Node("31".into())).unwrap();
    let idle_files = open_files_of(pid);

    let until = Instant::now() + ATTACK_FOR;
    let attack = flood_portal(portal, until);
    let probes = tokio::spawn(probe_readyz(admin, pid, until + HEADER_READ_TIMEOUT));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = file_until_receipted(&t, portal, 0, "slowloris-during").await;
    let ended = attack.await.unwrap();
    let probes = probes.await.unwrap();
    let after = file_until_receipted(&t, portal, 1, "slowloris-after").await;

    let figures = Figures::of(&ended);
    println!(
        "slowloris: {} connections opened over {ATTACK_FOR:?} ({} not connected); closed at once \
         (cap or share): {}; closed after the header timeout ({HEADER_READ_TIMEOUT:?}): {}, \
         held median {:?}, longest {:?}; left open: {}",
        figures.opened,
        figures.not_connected,
        figures.at_once,
        figures.held.len(),
        figures.held_median(),
        figures.held.last().copied().unwrap_or_default(),
        figures.still_open
    );
    println!(
        "slowloris: /readyz on the admin listener: {} probes, {} answered 200, latency median \
         {:?}, max {:?}; node's open files idle {idle_files}, at most {} during the attack \
         (limit {NODE_OPEN_FILES})",
        probes.latencies.len() + probes.failures.len(),
        probes.latencies.len(),
        probes.median(),
        probes.max(),
        probes.most_files
    );
    println!(
        "slowloris: a filing during the attack receipted after {} attempt(s) in {:?}; after it, \
         {} attempt(s) in {:?}",
        during.0, during.1, after.0, after.1
    );
    if let Ok(log) = std::fs::read_to_string(t.dir.path().join("node-31.log")) {
        for line in log.lines().filter(|l| l.contains("portal_connections")) {
            println!("slowloris: node log: {line}");
        }
    }

    assert_eq!(
        figures.still_open, 0,
        "slow connections the node never closed"
    );
    assert!(
        figures.held.len() > 100,
        "the flood held too few connections to mean much"
    );
    assert!(figures.at_once > 0, "no connection met a cap or a share");
    let longest = figures.held.last().copied().unwrap_or_default();
    assert!(
        longest < HEADER_READ_TIMEOUT + Duration::from_secs(8),
        "a slow connection was held {longest:?}"
    );
    assert!(
        probes.failures.is_empty(),
        "/readyz failed during the attack: {:?}",
        probes.failures
    );
    assert!(
        probes.latencies.len() >= 20,
        "too few probes: {}",
        probes.latencies.len()
    );
    assert!(probes.most_files < NODE_OPEN_FILES as usize);
    assert_eq!(after.0, 1, "the filing after the attack needed retries");
    t.shutdown().await;
}

/// A folder with the member binaries, `tongban-node` run at an open-files limit of
/// `limit` (soft and hard) by a shell that then execs it.
fn limited_binaries(limit: u64) -> tempfile::TempDir {
    let Launch::Processes { bin_dir, .. } = processes("warn") else {
        unreachable!("processes() runs processes")
    };
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "#!/bin/sh\nulimit -n {limit} || exit 1\nexec '{}' \"$@\"\n",
        bin_dir.join("tongban-node").display()
    );
    let wrapper = dir.path().join("tongban-node");
    std::fs::write(&wrapper, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(
        bin_dir.join("tongban-gateway"),
        dir.path().join("tongban-gateway"),
    )
    .unwrap();
    dir
}

fn open_files_of(pid: u32) -> usize {
    std::fs::read_dir(Path::new("/proc").join(pid.to_string()).join("fd"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

/// The flood: one task per slow connection, each opening its connection again after
/// the node closes it, until `until`.
fn flood_portal(portal: SocketAddr, until: Instant) -> tokio::task::JoinHandle<Vec<Ended>> {
    let mut sources = Vec::new();
    for a in 0..SPREAD.0 {
        sources.extend(std::iter::repeat_n(
            Ipv4Addr::new(127, 0, 1, 10 + a),
            SPREAD.1,
        ));
    }
    sources.extend(std::iter::repeat_n(Ipv4Addr::new(127, 0, 1, 2), ONE_HOST));
    tokio::spawn(async move {
        let mut tasks = JoinSet::new();
        for (i, from) in sources.into_iter().enumerate() {
            tasks.spawn(async move {
                let mut ended = Vec::new();
                loop {
                    ended.push(slow_connection(portal, from, i).await);
                    if Instant::now() >= until {
                        return ended;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            });
        }
        let mut all = Vec::new();
        while let Some(ended) = tasks.join_next().await {
            all.extend(ended.unwrap());
        }
        all
    })
}

/// One slow connection from `from`: the request line, then a header line every
/// [`TRICKLE`], until the node closes it (or a minute passes).
async fn slow_connection(portal: SocketAddr, from: Ipv4Addr, i: usize) -> Ended {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(Duration::from_secs(5), socket.connect(portal)).await
    else {
        return Ended::NotConnected;
    };
    let opened = Instant::now();
    let mut line = 0;
    let mut buf = [0u8; 1024];
    let _ = stream
        .write_all(b"POST /v1/applications HTTP/1.1\r\n")
        .await;
    while opened.elapsed() < Duration::from_secs(60) {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Ended::Closed(opened.elapsed()),
                // An answer (a 408, say) before the close.
                Ok(_) => {}
            },
            () = tokio::time::sleep(TRICKLE) => {
                line += 1;
                let header = format!("x-slow-{i}-{line}: {}\r\n", "y".repeat(16));
                if stream.write_all(header.as_bytes()).await.is_err() {
                    return Ended::Closed(opened.elapsed());
                }
            }
        }
    }
    Ended::StillOpen
}

/// What the flood saw.
struct Figures {
    opened: usize,
    not_connected: usize,
    at_once: usize,
    /// How long each connection held past [`AT_ONCE`] was open, shortest first.
    held: Vec<Duration>,
    still_open: usize,
}

impl Figures {
    fn of(ended: &[Ended]) -> Self {
        let mut figures = Figures {
            opened: 0,
            not_connected: 0,
            at_once: 0,
            held: Vec::new(),
            still_open: 0,
        };
        for ended in ended {
            match *ended {
                Ended::NotConnected => figures.not_connected += 1,
                Ended::StillOpen => figures.still_open += 1,
                Ended::Closed(after) if after < AT_ONCE => figures.at_once += 1,
                Ended::Closed(after) => figures.held.push(after),
            }
        }
        figures.opened = ended.len() - figures.not_connected;
        figures.held.sort();
        figures
    }

    fn held_median(&self) -> Duration {
        self.held
            .get(self.held.len() / 2)
            .copied()
            .unwrap_or_default()
    }
}

/// `/readyz` as a kubelet asks it.
struct Probes {
    latencies: Vec<Duration>,
    failures: Vec<String>,
    most_files: usize,
}

impl Probes {
    fn sorted(&self) -> Vec<Duration> {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        sorted
    }

    fn median(&self) -> Duration {
        let sorted = self.sorted();
        sorted.get(sorted.len() / 2).copied().unwrap_or_default()
    }

    fn max(&self) -> Duration {
        self.sorted().last().copied().unwrap_or_default()
    }
}

/// Asks `/readyz` on `admin` every 200 ms on a new connection until `until`, and reads
/// how many files the node `pid` holds each time.
async fn probe_readyz(admin: SocketAddr, pid: u32, until: Instant) -> Probes {
    let mut probes = Probes {
        latencies: Vec::new(),
        failures: Vec::new(),
        most_files: 0,
    };
    while Instant::now() < until {
        let started = Instant::now();
        match tokio::time::timeout(Duration::from_secs(5), readyz(admin)).await {
            Ok(Ok(status)) if status.starts_with("HTTP/1.1 200") => {
                probes.latencies.push(started.elapsed());
            }
            Ok(Ok(status)) => probes.failures.push(status),
            Ok(Err(error)) => probes.failures.push(error.to_string()),
            Err(_) => probes.failures.push("no answer within 5 s".into()),
        }
        probes.most_files = probes.most_files.max(open_files_of(pid));
        tokio::time::sleep(Duration::from_millis(200).saturating_sub(started.elapsed())).await;
    }
    probes
}

/// The status line of `GET /readyz` on a new connection.
async fn readyz(admin: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(admin).await?;
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nhost: probe\r\nconnection: close\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer);
    Ok(text.lines().next().unwrap_or("").to_owned())
}

/// Files a case for a resident of 44 at `portal`, retrying a failed connection or a 5xx
/// with the same idempotency key until receipted (within 30 s); the attempts and the
/// time it took.
async fn file_until_receipted(
    t: &TestFederation,
    portal: SocketAddr,
    resident: usize,
    key: &str,
) -> (usize, Duration) {
    let client = PortalClient::new(format!("http://{portal}"));
    let filing = medical_filing(&t.residents("44")[resident]);
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        match client.file_with_key(&filing, key).await {
            Ok(r) if r.status == 201 || r.status == 200 => return (attempts, started.elapsed()),
            Ok(r) if r.status < 500 => panic!("filing {key} refused: {} {}", r.status, r.body),
            _ => {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "{key} not receipted within 30 s ({attempts} attempts)"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
