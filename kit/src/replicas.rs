//! Further replicas of a node whose store is on PostgreSQL: the node's own config with
//! its own ports, replica name and audit trail, sharing the store (and the province
//! platform) with the node. Fault tests kill and restart them like any member
//! (`Member::Replica`, restarted by `control`).

use tokio::net::TcpListener;
use tongban_node::config::{ListenConfig, NodeConfig, PlatformConfig, StoreConfig};

use crate::{
    config::node,
    error::KitError,
    federation::LocalFederation,
    launch::{
        configs::replica_name,
        sockets::{NodeSockets, local_addr},
    },
};

/// The tool named in the configs' headers.
const WRITER: &str = "tongban kit";

impl LocalFederation {
    /// Starts another replica of the node of `prefix`, whose store must be on
    /// PostgreSQL and whose platform must be one replicas can share (a province
    /// platform over HTTP). Returns its index (the node itself is replica 0).
    pub async fn add_node_replica(&mut self, prefix: &str) -> Result<usize, KitError> {
        let first = self.node(prefix)?;
        let (region, region_prefix) = (first.region, first.prefix);
        let mut config = NodeConfig::load(&first.config_path)?;
        let index = self.replicas.get(prefix).map_or(0, Vec::len) + 1;
        let StoreConfig::Postgres(store) = &mut config.store else {
            return Err(KitError::Other(format!(
                "node {prefix} keeps its store in SQLite: only a PostgreSQL store takes replicas"
            )));
        };
        if matches!(config.platform, PlatformConfig::Embedded { .. }) {
            return Err(KitError::Other(format!(
                "node {prefix} runs the embedded platform, which replicas cannot share: \
                 give it a province platform (spec.http_platforms)"
            )));
        }
        store.replica = Some(replica_name(prefix, index));
        let bind = || TcpListener::bind("127.0.0.1:0");
        let io = |e: std::io::Error| KitError::Other(format!("binding a replica's port: {e}"));
        let sockets = NodeSockets {
            region,
            prefix: region_prefix,
            federation: bind().await.map_err(io)?,
            portal: bind().await.map_err(io)?,
            admin: bind().await.map_err(io)?,
            operator: bind().await.map_err(io)?,
        };
        config.listen = ListenConfig {
            federation: local_addr(&sockets.federation)?,
            portal: local_addr(&sockets.portal)?,
            admin: Some(local_addr(&sockets.admin)?),
        };
        if let Some(operators) = &mut config.operators {
            operators.listen = local_addr(&sockets.operator)?;
        }
        config.audit.file = self.dir.join(format!("node-{prefix}-{index}-audit.log"));
        let path = self.dir.join(format!("node-{prefix}-{index}.toml"));
        node::write(&path, &config, WRITER)?;
        let replica = self.launch_node(&path, sockets).await?;
        self.replicas
            .entry(prefix.to_owned())
            .or_default()
            .push(replica);
        Ok(index)
    }
}
