//! Node configs: what a provincial node is started from.

use std::{path::Path, time::Duration};

use tongban_node::{
    config::{
        GatewayLink, IssuerConfig, ListenConfig, NodeConfig, OutboxConfig, PlatformConfig,
        StoreConfig,
    },
    peers::PeersConfig,
};
use tongban_proto::rules::region::RegionCode;
use tongban_runtime::{
    audit::trail::TrailSettings,
    trust::tls::{ClientSettings, TlsFiles},
};

use crate::{config::files::write_toml, error::KitError};

/// A node config with the kit's settings: region `region` on `listen`, presenting
/// `tls`, calling the gateway `endpoints`, on `platform`; its store and trail are
/// `node{suffix}.db` and `node{suffix}-audit.log`, no issuer key, the peers' keys from
/// `registry.toml` beside it (the gateway's registry), a 5 s handshake timeout,
/// everything else the defaults.
pub fn config(
    region: RegionCode,
    listen: ListenConfig,
    tls: TlsFiles,
    endpoints: Vec<String>,
    suffix: &str,
    platform: PlatformConfig,
) -> NodeConfig {
    NodeConfig {
        region,
        listen,
        tls,
        gateway: GatewayLink {
            endpoints,
            server_name: None,
            client: ClientSettings::default(),
        },
        store: StoreConfig::Sqlite(format!("node{suffix}.db").into()),
        audit: TrailSettings::at(&format!("node{suffix}-audit.log")),
        platform,
        outbox: OutboxConfig::default(),
        handshake_timeout: Duration::from_secs(5),
        listener_limits: Default::default(),
        issuer: IssuerConfig {
            keys: Vec::new(),
            assertion_validity: None,
        },
        peers: PeersConfig::at("registry.toml".into()),
        recognition: Default::default(),
        calendar: Default::default(),
        evaluations: Default::default(),
        telemetry: Default::default(),
        access_log: None,
        operators: None,
        source: None,
    }
}

/// The embedded platform at `platform{suffix}.db`, seeded with `seed_residents`
/// synthetic residents, its demo clerk approving every case `auto_approve_after` per
/// step (`None`: no clerk).
pub fn embedded_platform(
    suffix: &str,
    seed_residents: u32,
    auto_approve_after: Option<Duration>,
) -> PlatformConfig {
    PlatformConfig::Embedded {
        database: format!("platform{suffix}.db").into(),
        seed_residents,
        auto_approve_after,
    }
}

/// Writes a node config, its header naming the region and the tool that wrote it (`by`).
pub fn write(path: &Path, config: &NodeConfig, by: &str) -> Result<(), KitError> {
    write_toml(
        path,
        config,
        &format!("# Node {} config (written by `{by}`).", config.region),
    )
}
