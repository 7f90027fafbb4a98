//! The whole local federation once started: its folder, its members and the fault
//! proxies on its links. Starting it is `launch`'s job, stopping, killing and restarting
//! members `control`'s.

use std::{collections::BTreeMap, path::PathBuf};

use crate::{
    error::KitError,
    fault::FaultProxy,
    member::{Run, RunningGateway, RunningNode},
    platform::RunningPlatform,
    spec::{FederationSpec, Link, Member},
};

/// The whole local federation.
pub struct LocalFederation {
    pub dir: PathBuf,
    pub ca_pem: PathBuf,
    pub gateways: Vec<RunningGateway>,
    pub nodes: BTreeMap<String, RunningNode>,
    /// The province platforms of nodes with an HTTP platform, by prefix.
    pub platforms: BTreeMap<String, RunningPlatform>,
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
        }
        .ok_or_else(|| KitError::Other(format!("no member {member:?}")))
    }

    /// Shuts everything down gracefully and waits for it: nodes first, then their
    /// platforms, then gateways.
    pub async fn shutdown(mut self) {
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
