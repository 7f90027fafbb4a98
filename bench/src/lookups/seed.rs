//! What the node's register holds for the lookup scenario, written before the node
//! starts.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context;
use tongban_kit::config::pki::issuer_key;
use tongban_node::{
    platform::embedded::{EmbeddedPlatform, synthetic_residents},
    store::Store,
};
use tongban_proto::rules::region::{RegionPrefix, RegionTable};
use tongban_runtime::trust::pki::IssuerKey;

/// What the node's register holds for the scenario.
pub struct Setup {
    pub holder: String,
    pub licenses: Vec<String>,
    pub key: IssuerKey,
    pub key_file: PathBuf,
}

/// Before the node starts: its issuer key, and `count` licenses of one holder in its
/// register (so each uncached lookup can ask for one never asked for before).
pub async fn seed(dir: &Path, pki: &Path, count: u32) -> anyhow::Result<Setup> {
    let prefix = RegionPrefix::parse("44")?;
    let store = Store::open(&dir.join("node.db"))?;
    let id_key: Arc<[u8]> = store.id_hash_key().await?.into();
    drop(store);
    let platform = EmbeddedPlatform::open(&dir.join("platform.db"), &prefix)?;
    let holder = synthetic_residents(RegionTable::embedded(), &prefix, 1)
        .into_iter()
        .next()
        .context("a synthetic resident of 44")?
        .id;
    let licenses = platform
        .issue_many("marriage_certificate", "440000", &holder, count, id_key)
        .await
        .map_err(|e| anyhow::anyhow!("seeding licenses: {e}"))?;
    let (key, key_file) = issuer_key(pki, "44-bench")?;
    Ok(Setup {
        holder: holder.as_str().to_owned(),
        licenses,
        key,
        key_file,
    })
}
