//! The whole local federation once started: its folder, its members and the fault
//! proxies on its links. Starting it is `launch`'s job, stopping, killing and restarting
//! members `control`'s.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use crate::{
    error::KitError,
    fault::FaultProxy,
    member::{Run, RunningGateway, RunningNode},
    platform::RunningPlatform,
    postgres::PostgresCluster,
    spec::{FederationSpec, Link, Member},
    tcp_proxy::TcpProxy,
};

/// The whole local federation.
pub struct LocalFederation {
    pub dir: PathBuf,
    pub ca_pem: PathBuf,
    pub gateways: Vec<RunningGateway>,
    pub nodes: BTreeMap<String, RunningNode>,
    /// The province platforms of nodes with an HTTP platform, by prefix.
    pub platforms: BTreeMap<String, RunningPlatform>,
    /// Further replicas of nodes whose store is on PostgreSQL, by prefix; replica `i`
    /// (from 1) at index `i - 1`.
    pub replicas: BTreeMap<String, Vec<RunningNode>>,
    /// The federation's PostgreSQL, when the spec asks for one (node stores, the
    /// gateways' shared revocation log).
    pub postgres: Option<Arc<PostgresCluster>>,
    /// The one address nodes reach the gateways at, when the spec puts them behind one.
    pub gateway_front: Option<TcpProxy>,
    pub(crate) links: BTreeMap<Link, FaultProxy>,
    pub(crate) spec: FederationSpec,
    /// Extra environment of node processes by prefix, from their next start.
    pub(crate) node_env: BTreeMap<String, Vec<(String, String)>>,
}

impl LocalFederation {
    /// The first gateway replica.
    pub fn gateway(&self) -> &RunningGateway {
        &self.gateways[0]
    }

    /// The node serving `prefix` ("44").
    pub fn node(&self, prefix: &str) -> Result<&RunningNode, KitError> {
        self.nodes
            .get(prefix)
            .ok_or_else(|| KitError::Other(format!("no node for prefix {prefix}")))
    }

    /// Replica `index` of the node serving `prefix`: 0 is the node itself.
    pub fn replica(&self, prefix: &str, index: usize) -> Result<&RunningNode, KitError> {
        match index {
            0 => self.node(prefix),
            i => self
                .replicas
                .get(prefix)
                .and_then(|r| r.get(i - 1))
                .ok_or_else(|| KitError::Other(format!("no replica {i} of node {prefix}"))),
        }
    }

    /// The province platform of the node serving `prefix` (one with an HTTP platform).
    pub fn platform(&self, prefix: &str) -> Result<&RunningPlatform, KitError> {
        self.platforms
            .get(prefix)
            .ok_or_else(|| KitError::Other(format!("no province platform for prefix {prefix}")))
    }

    /// The same, to stop, kill or restart it.
    pub fn platform_mut(&mut self, prefix: &str) -> Result<&mut RunningPlatform, KitError> {
        self.platforms
            .get_mut(prefix)
            .ok_or_else(|| KitError::Other(format!("no province platform for prefix {prefix}")))
    }

    /// The fault proxy on `link` (started with `fault_proxies`).
    pub fn link(&self, link: &Link) -> Result<&FaultProxy, KitError> {
        self.links
            .get(link)
            .ok_or_else(|| KitError::Other(format!("no fault proxy on {link:?}")))
    }

    /// The spec this federation was started from.
    pub fn spec(&self) -> &FederationSpec {
        &self.spec
    }

    /// How `member` runs.
    pub(crate) fn run_of(&mut self, member: &Member) -> Result<&mut Run, KitError> {
        match member {
            Member::Gateway(i) => self.gateways.get_mut(*i).map(|g| &mut g.run),
            Member::Node(p) => self.nodes.get_mut(p).map(|n| &mut n.run),
            Member::Replica(p, i) => self
                .replicas
                .get_mut(p)
                .and_then(|r| r.get_mut(i.checked_sub(1)?))
                .map(|n| &mut n.run),
        }
        .ok_or_else(|| KitError::Other(format!("no member {member:?}")))
    }

    /// Shuts everything down gracefully and waits for it: nodes first, then their
    /// platforms, then gateways.
    pub async fn shutdown(mut self) {
        for node in self.replicas.values_mut().flatten() {
            node.run.stop().await;
        }
        for node in self.nodes.values_mut() {
            node.run.stop().await;
        }
        for platform in self.platforms.values_mut() {
            platform.stop().await;
        }
        for gateway in &mut self.gateways {
            gateway.run.stop().await;
        }
    }
}
