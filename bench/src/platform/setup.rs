//! What the platform-adapter scenario runs: the reference platform as its own process
//! (`tongban platform serve`, release binary) in a province folder written by the kit
//! (its own CA, the platform's certificate for 127.0.0.1, the node's client certificate,
//! an HMAC secret; the timed clerk off), and two nodes as region 44 with the same config
//! but their platform: one on the embedded platform (SQLite in the node process), one in
//! front of that reference platform over the HTTP contract with mutual TLS and HMAC.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use tongban_kit::config::{
    node,
    pki::tls_files,
    platform::{PlatformPlan, ProvincePlatform},
};
use tongban_node::config::{ListenConfig, PlatformConfig};
use tongban_proto::rules::region::{RegionCode, RegionPrefix};
use tongban_runtime::trust::identity::PeerIdentity;

use crate::procs::{self, Proc};

/// The tool named in the configs' headers.
const WRITER: &str = "tongban-bench";

/// How often the HTTP adapter reads the platform's feeds: 1 s, the adapter's default
/// and the embedded platform's own poll (which is also woken by a change).
const POLL: Duration = Duration::from_secs(1);

/// The scenario's processes.
pub struct Started {
    /// The node on the embedded platform, and its federation port.
    pub embedded: (Proc, u16),
    /// The node in front of the reference platform, and its federation port.
    pub http: (Proc, u16),
    /// The reference platform process.
    pub platform: Proc,
    /// The embedded platform's database (in the node's folder).
    pub embedded_db: PathBuf,
    /// The reference platform's files (its database among them).
    pub files: ProvincePlatform,
}

impl Started {
    /// Fails if any of them has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.embedded.0.check_alive()?;
        self.http.0.check_alive()?;
        self.platform.check_alive()
    }

    pub fn stop(self) {
        self.embedded.0.stop();
        self.http.0.stop();
        self.platform.stop();
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Starts a node as region 44 (the bench's PKI, under `dir/pki`) with `platform`; its
/// files are `node{suffix}.*`. Returns it and its federation port.
fn start_node(
    dir: &Path,
    bin_dir: &Path,
    suffix: &str,
    platform: PlatformConfig,
) -> anyhow::Result<(Proc, u16)> {
    let node_id = PeerIdentity::Region(RegionPrefix::parse("44")?);
    let port = procs::free_port()?;
    let listen = ListenConfig {
        federation: loopback(port),
        portal: loopback(procs::free_port()?),
        admin: None,
    };
    let mut config = node::config(
        RegionCode::parse("440000")?,
        listen,
        tls_files(Path::new("pki"), &node_id),
        // Nothing is forwarded: the node only takes deliveries (their acceptance goes
        // back in the answer, so nothing is queued for the gateway either).
        vec!["https://127.0.0.1:9".into()],
        suffix,
        platform,
    );
    config.peers = crate::node_peers::node_peers(dir)?;
    let path = dir.join(format!("node{suffix}.toml"));
    node::write(&path, &config, WRITER)?;
    let name = format!("node{suffix}");
    let proc = Proc::spawn(
        &name,
        &bin_dir.join("tongban-node"),
        &["--config", path.to_str().context("utf-8 path")?],
        &[("RUST_LOG", "warn")],
        &dir.join(format!("{name}.log")),
    )?;
    Ok((proc, port))
}

/// Writes the province platform's folder, then starts the platform, and the two nodes
/// once it listens; returns when all three do.
pub async fn start(dir: &Path, bin_dir: &Path) -> anyhow::Result<Started> {
    let tongban = bin_dir.join("tongban");
    if !tongban.exists() {
        anyhow::bail!(
            "{} is missing: scripts/bench builds it (cargo build --release -p tongban-cli), or pass --no-platform",
            tongban.display()
        );
    }
    let files = PlatformPlan {
        federation_dir: dir,
        prefix: RegionPrefix::parse("44")?,
        listen: loopback(procs::free_port()?),
        clerk_listen: loopback(procs::free_port()?),
        seed_residents: 0,
        // No timed clerk: every case stays as taken over, so only take-overs are
        // measured.
        auto_approve_after: None,
    }
    .write()?;
    let config = files.config_path.to_str().context("utf-8 path")?;
    let platform = Proc::spawn(
        "platform",
        &tongban,
        &["platform", "serve", "--config", config],
        &[("RUST_LOG", "warn")],
        &dir.join("platform-44.log"),
    )?;
    // The node reaches it only on its first delivery, but a platform that failed to
    // start is named here rather than as a failed delivery.
    if let Err(e) = procs::wait_listening(files.listen, "the reference platform").await {
        platform.stop();
        return Err(e);
    }
    let embedded = start_node(
        dir,
        bin_dir,
        "-embedded",
        node::embedded_platform("-embedded", 0, None),
    )?;
    let http = start_node(dir, bin_dir, "-http", files.node_platform(dir, POLL))?;
    let started = Started {
        embedded,
        http,
        platform,
        embedded_db: dir.join("platform-embedded.db"),
        files,
    };
    for (what, port) in [
        ("node-embedded", started.embedded.1),
        ("node-http", started.http.1),
    ] {
        if let Err(e) = procs::wait_listening(loopback(port), what).await {
            started.stop();
            return Err(e);
        }
    }
    Ok(started)
}
