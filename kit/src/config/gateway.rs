//! Gateway configs and node registries: what a gateway replica is started from.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use tongban_gateway::{
    config::{GatewayConfig, default_trail},
    registry::{IssuerKeyEntry, RegistryFile},
};
use tongban_runtime::trust::{
    pki::IssuerKey,
    tls::{ClientSettings, TlsFiles},
};

use crate::{config::files::write_toml, error::KitError};

/// A gateway config with the kit's settings: federation listener `listen`, admin
/// listener `admin`, `tls`, routing by the registry file `registry`; one worker thread,
/// a 5 s handshake timeout, the built-in catalog, everything else the defaults.
pub fn config(
    listen: SocketAddr,
    admin: Option<SocketAddr>,
    tls: TlsFiles,
    registry: PathBuf,
) -> GatewayConfig {
    GatewayConfig {
        listen,
        admin_listen: admin,
        tls,
        registry,
        catalog: None,
        catalog_ledger: None,
        sharing_list: None,
        upstream: ClientSettings::default(),
        handshake_timeout: Duration::from_secs(5),
        worker_threads: 1,
        recognition: Default::default(),
        telemetry: Default::default(),
        limits: Default::default(),
        console: Default::default(),
        audit: default_trail(),
        revocation_log: None,
        reload: Default::default(),
        operators: None,
    }
}

/// A registry entry for issuer `key`, valid from an hour before `now` (clocks differ)
/// to `now + validity`.
pub fn issuer_key_entry(key: &IssuerKey, now: SystemTime, validity: Duration) -> IssuerKeyEntry {
    IssuerKeyEntry {
        id: key.key_id.clone(),
        ed25519_public_key: Some(key.public_key_hex()),
        ed25519_public_key_file: None,
        not_before: now - Duration::from_secs(3600),
        not_after: now + validity,
    }
}

/// Writes a gateway config, its header naming the tool that wrote it (`by`).
pub fn write(path: &Path, config: &GatewayConfig, by: &str) -> Result<(), KitError> {
    write_toml(
        path,
        config,
        &format!("# Gateway config (written by `{by}`)."),
    )
}

/// Writes a node registry, its header naming the tool that wrote it (`by`).
pub fn write_registry(path: &Path, registry: &RegistryFile, by: &str) -> Result<(), KitError> {
    write_toml(
        path,
        registry,
        &format!("# Node registry: region prefix -> node endpoints (written by `{by}`)."),
    )
}
