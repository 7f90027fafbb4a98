//! Members' listeners on loopback, bound before their configs are written so their
//! ports are their own, and bound again on the old ports for a restart.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use tokio::net::TcpListener;
use tongban_proto::rules::region::{RegionCode, RegionPrefix};

use crate::{error::KitError, spec::FederationSpec};

/// A gateway replica's listeners.
pub(crate) struct GatewaySockets {
    pub federation: TcpListener,
    pub admin: TcpListener,
    pub operator: TcpListener,
}

/// A node's listeners.
pub(crate) struct NodeSockets {
    pub region: RegionCode,
    pub prefix: RegionPrefix,
    pub federation: TcpListener,
    pub portal: TcpListener,
    pub admin: TcpListener,
    pub operator: TcpListener,
}

/// Every member's listeners.
pub(crate) struct Sockets {
    pub gateways: Vec<GatewaySockets>,
    pub nodes: Vec<NodeSockets>,
}

impl Sockets {
    /// Binds listeners on free loopback ports for every member of `spec`.
    pub async fn bind(spec: &FederationSpec) -> Result<Self, KitError> {
        let mut gateways = Vec::new();
        for _ in 0..spec.gateways {
            gateways.push(GatewaySockets {
                federation: bind_loopback().await?,
                admin: bind_loopback().await?,
                operator: bind_loopback().await?,
            });
        }
        let mut nodes = Vec::new();
        for region in &spec.regions {
            let prefix = RegionPrefix::parse(region.significant_prefix())
                .map_err(|e| KitError::Other(e.to_string()))?;
            nodes.push(NodeSockets {
                region: *region,
                prefix,
                federation: bind_loopback().await?,
                portal: bind_loopback().await?,
                admin: bind_loopback().await?,
                operator: bind_loopback().await?,
            });
        }
        Ok(Self { gateways, nodes })
    }
}

pub(crate) async fn bind_loopback() -> Result<TcpListener, KitError> {
    TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| KitError::Other(format!("binding 127.0.0.1:0: {e}")))
}

pub(crate) async fn rebind(addr: SocketAddr) -> Result<TcpListener, KitError> {
    // A restarted member comes back on its old port; the old socket may linger briefly.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) if Instant::now() > deadline => {
                return Err(KitError::Other(format!("rebinding {addr}: {e}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

pub(crate) fn local_addr(l: &TcpListener) -> Result<SocketAddr, KitError> {
    l.local_addr()
        .map_err(|e| KitError::Other(format!("local address: {e}")))
}
