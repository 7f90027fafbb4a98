//! The bench node's copy of the registry and what signs the load's deliveries: the
//! node takes a delivery only signed by a region its copy lists (`tongban-signature`),
//! so the load signs as region 31's node would.

use std::{path::Path, time::Duration};

use tongban_kit::testing::RegionSigner;
use tongban_node::peers::PeersConfig;
use tongban_proto::rules::region::RegionPrefix;

/// The id of the key the load signs its deliveries with, as region 31's node would.
const SIGNER_31: &str = "31-k1";

/// Writes `node-peers.toml`, the node's copy of the registry: region 31 with the key
/// the load signs with (written to `pki/` once), and 44. Its signatures are taken for a
/// day, as the load signs one message once for a whole run. Returns its path.
pub fn write_node_peers(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let pki = dir.join("pki");
    let key_file = pki.join(format!("issuer-{SIGNER_31}.key"));
    let public_file = pki.join(format!("issuer-{SIGNER_31}.pub"));
    if !public_file.exists() {
        let key = tongban_runtime::trust::pki::IssuerKey::generate(SIGNER_31)?;
        std::fs::create_dir_all(&pki)?;
        key.write(&pki)?;
        std::fs::write(&public_file, key.public_key_hex())?;
    }
    anyhow::ensure!(key_file.exists(), "{} is missing", key_file.display());
    let path = dir.join("node-peers.toml");
    std::fs::write(
        &path,
        format!(
            "[[region]]\nprefix = \"31\"\nendpoints = [\"https://127.0.0.1:9\"]\n\
             [[region.issuer_keys]]\nid = \"{SIGNER_31}\"\n\
             ed25519_public_key_file = \"pki/issuer-{SIGNER_31}.pub\"\n\
             not_before = \"2000-01-01T00:00:00Z\"\nnot_after = \"2100-01-01T00:00:00Z\"\n\
             [[region]]\nprefix = \"44\"\nendpoints = [\"https://127.0.0.1:9\"]\n"
        ),
    )?;
    Ok(path)
}

/// The node's peers: [`write_node_peers`]'s registry, signatures taken for a day.
pub fn node_peers(dir: &Path) -> anyhow::Result<PeersConfig> {
    Ok(PeersConfig {
        max_age: Duration::from_secs(86_400),
        ..PeersConfig::at(write_node_peers(dir)?)
    })
}

/// What signs the load's deliveries as region 31 (the key [`write_node_peers`] wrote
/// into `pki`).
pub fn signer_31(pki: &Path) -> anyhow::Result<Option<RegionSigner>> {
    let prefix = RegionPrefix::parse("31")?;
    RegionSigner::of(pki, prefix)
        .map(Some)
        .ok_or_else(|| anyhow::anyhow!("no key {SIGNER_31} in {}", pki.display()))
}
