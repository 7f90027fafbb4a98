//! The federation's links, node → gateway and gateway → node, each through a fault
//! proxy when the spec asks for them: where each caller is told to connect.

use std::{collections::BTreeMap, net::SocketAddr};

use crate::{
    error::KitError,
    fault::FaultProxy,
    launch::sockets::{Sockets, bind_loopback, local_addr},
    spec::{FederationSpec, Link},
    tcp_proxy::TcpProxy,
};

/// Where the caller of each link connects: its fault proxy, or the far side itself.
pub(crate) struct Routes(BTreeMap<Link, SocketAddr>);

impl Routes {
    /// The URL the caller of `link` is configured with.
    pub fn url(&self, link: Link) -> Result<String, KitError> {
        self.0
            .get(&link)
            .map(|a| format!("https://{a}"))
            .ok_or_else(|| KitError::Other(format!("no address for {link:?}")))
    }
}

/// Every link between the gateways and the nodes of `sockets`, with a fault proxy on
/// each if `spec.fault_proxies`.
pub(crate) async fn wire(
    spec: &FederationSpec,
    sockets: &Sockets,
) -> Result<(BTreeMap<Link, FaultProxy>, Routes), KitError> {
    let mut proxies = BTreeMap::new();
    let mut routes = BTreeMap::new();
    for (g, gw) in sockets.gateways.iter().enumerate() {
        for node in &sockets.nodes {
            let node_name = node.prefix.to_string();
            for (link, upstream) in [
                (
                    Link::NodeToGateway {
                        node: node_name.clone(),
                        gateway: g,
                    },
                    local_addr(&gw.federation)?,
                ),
                (
                    Link::GatewayToNode {
                        gateway: g,
                        node: node_name.clone(),
                    },
                    local_addr(&node.federation)?,
                ),
            ] {
                let addr = if spec.fault_proxies {
                    let proxy = FaultProxy::start(bind_loopback().await?, upstream)
                        .map_err(|e| KitError::Other(format!("fault proxy: {e}")))?;
                    let addr = proxy.addr();
                    proxies.insert(link.clone(), proxy);
                    addr
                } else {
                    upstream
                };
                routes.insert(link, addr);
            }
        }
    }
    Ok((proxies, Routes(routes)))
}

/// The one address in front of every gateway replica, when the spec asks for it.
pub(crate) fn front(
    spec: &FederationSpec,
    sockets: &Sockets,
) -> Result<Option<TcpProxy>, KitError> {
    if !spec.gateways_behind_one_address {
        return Ok(None);
    }
    let replicas = sockets
        .gateways
        .iter()
        .map(|g| local_addr(&g.federation))
        .collect::<Result<Vec<_>, _>>()?;
    TcpProxy::start(replicas)
        .map(Some)
        .map_err(|e| KitError::Other(format!("the gateways' front proxy: {e}")))
}
