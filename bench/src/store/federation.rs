//! One round's federation for one configuration, started by the kit as real processes
//! (release binaries beside this one): a gateway, 44's node (embedded platform, where
//! the cases go) and 31's node, the origin, in front of a province platform process
//! (`tongban platform serve`) in every configuration, since replicas need a platform
//! they can share and the platform must not be what differs. 31's store is SQLite, or
//! a database in a PostgreSQL 15 cluster the kit starts for this federation alone (so
//! it starts empty), with one or two node replicas on it.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, bail};
use tongban_kit::{FederationSpec, Launch, LocalFederation, Member, postgres::PostgresCluster};
use tongban_node::{
    config::OutboxConfig, platform::embedded::EmbeddedPlatform, portal_client::PortalClient,
};

use super::model::{Config, Spent};
use crate::procs;

/// The origin: where filings are made, the node whose store is measured.
pub(super) const ORIGIN: &str = "31";
/// Where every filed case goes (its residents are the applicants).
pub(super) const TARGET: &str = "44";

/// Whether the scenario can run here: the release binaries it starts, and PostgreSQL.
pub(super) fn check_tools(bin_dir: &Path) -> anyhow::Result<()> {
    for binary in ["tongban-gateway", "tongban-node", "tongban"] {
        if !bin_dir.join(binary).exists() {
            bail!(
                "{} is missing: scripts/bench builds it (cargo build --release -p tongban-gateway -p tongban-node -p tongban-cli), or pass --no-store",
                bin_dir.join(binary).display()
            );
        }
    }
    if let Some(why) = PostgresCluster::why_unavailable() {
        bail!("{why}; or pass --no-store");
    }
    Ok(())
}

/// The processes whose CPU is read around a measured batch.
pub(super) struct Pids {
    origin: Vec<u32>,
    postmaster: Option<u32>,
    others: Vec<u32>,
}

impl Pids {
    /// CPU seconds so far of each group (`None` where a reading is missing).
    fn read(&self) -> [Option<f64>; 3] {
        let sum = |pids: &[u32]| {
            // An empty group is no reading, not 0 s.
            if pids.is_empty() {
                return None;
            }
            pids.iter()
                .map(|&p| procs::cpu_seconds_with_reaped(p))
                .sum::<Option<f64>>()
        };
        [
            sum(&self.origin),
            self.postmaster.and_then(procs::cpu_seconds_with_reaped),
            sum(&self.others),
        ]
    }

    /// A reading now, to subtract from a later one.
    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot(self.read())
    }

    /// What was spent since `before`.
    pub(super) fn since(&self, before: &Snapshot) -> Spent {
        let now = self.read();
        let spent = |i: usize| match (before.0[i], now[i]) {
            (Some(b), Some(a)) => a - b,
            _ => f64::NAN,
        };
        Spent {
            origin: spent(0),
            postgres: spent(1),
            others: spent(2),
        }
    }
}

/// CPU readings at one instant.
pub(super) struct Snapshot([Option<f64>; 3]);

/// A started federation.
pub(super) struct Started {
    pub(super) fed: LocalFederation,
    /// The portals of the origin's node process(es), filed at in turn.
    pub(super) portals: Vec<PortalClient>,
    pub(super) pids: Pids,
    /// 44's platform database, read to see the cases arrive.
    pub(super) target: Arc<EmbeddedPlatform>,
}

/// The postmaster's pid: the first line of `postmaster.pid` in the data folder.
fn postmaster_pid(cluster: &PostgresCluster) -> anyhow::Result<u32> {
    let path = cluster.dir().join("data").join("postmaster.pid");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .next()
        .and_then(|line| line.trim().parse().ok())
        .with_context(|| format!("{}: no pid on its first line", path.display()))
}

/// Starts the federation of `config` in `dir` (a new folder) with the binaries of
/// `bin_dir`.
pub(super) async fn start(config: Config, dir: &Path, bin_dir: &Path) -> anyhow::Result<Started> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut spec = FederationSpec::new(dir, &["310000", "440000"])?;
    spec.launch = Launch::Processes {
        bin_dir: bin_dir.to_owned(),
        log: "warn".into(),
    };
    spec.http_platforms = vec![ORIGIN.into()];
    spec.platform_binary = Some(bin_dir.join("tongban"));
    // No clerk: cases stay as taken over, so no status changes flow back to the origin
    // while it is measured; the work per filing is its filing and its delivery.
    spec.auto_approve_after = None;
    // The outbox as deployed, not the kit's quicker test timings.
    spec.outbox = OutboxConfig::default();
    if config.on_postgres() {
        spec.postgres_stores = vec![ORIGIN.into()];
    }
    let mut fed = LocalFederation::start(spec)
        .await
        .with_context(|| format!("starting the federation for {}", config.label()))?;
    for _ in 1..config.replicas() {
        fed.add_node_replica(ORIGIN)
            .await
            .context("starting a second replica of 31's node")?;
    }
    let mut origin = Vec::new();
    let mut portals = Vec::new();
    for i in 0..config.replicas() {
        // The kit's members: the node itself, then its further replicas from 1.
        let member = match i {
            0 => Member::Node(ORIGIN.into()),
            i => Member::Replica(ORIGIN.into(), i),
        };
        let pid = fed
            .pid(&member)
            .with_context(|| format!("replica {i} of 31's node is not a process"))?;
        origin.push(pid);
        let replica = fed.replica(ORIGIN, i)?;
        portals.push(PortalClient::new(format!("http://{}", replica.portal_addr)));
    }
    let mut others = Vec::new();
    for member in [Member::Gateway(0), Member::Node(TARGET.into())] {
        others.push(
            fed.pid(&member)
                .with_context(|| format!("{member:?} is not a process"))?,
        );
    }
    others.push(
        fed.platform(ORIGIN)?
            .pid()
            .context("31's platform is not a process")?,
    );
    let postmaster = match &fed.postgres {
        Some(cluster) => Some(postmaster_pid(cluster)?),
        None => None,
    };
    let target = fed.node(TARGET)?.platform.clone();
    Ok(Started {
        fed,
        portals,
        pids: Pids {
            origin,
            postmaster,
            others,
        },
        target,
    })
}

/// The folder of `config`'s federation in `round` under `dir`.
pub(super) fn folder(dir: &Path, config: Config, round: u32) -> PathBuf {
    dir.join(format!("round-{}-{}", round + 1, config.key()))
}
