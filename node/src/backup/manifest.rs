//! A backup folder's `manifest.json`: what the backup holds, and the fingerprint of the
//! keyed-hash secret it was taken with.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{BackupError, io_error};

/// The manifest's file name inside a backup folder.
pub const MANIFEST: &str = "manifest.json";
/// The store's copy in a backup of a SQLite store.
pub(super) const STORE_SQLITE: &str = "store.sqlite";
/// The store's dump in a backup of a PostgreSQL store (pg_dump's custom format).
pub(super) const STORE_DUMP: &str = "store.pgdump";
/// The embedded platform's register and cases.
pub(super) const PLATFORM_SQLITE: &str = "platform.sqlite";

/// What a backup holds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// `sqlite` or `postgres`.
    pub store_kind: String,
    /// The node's region.
    pub region: String,
    /// When the backup was taken (Unix ms).
    pub taken_ms: i64,
    /// The fingerprint of the keyed-hash secret for ID numbers in the store (never the
    /// secret itself).
    pub id_hash_key_fingerprint: String,
    /// The store's file in the folder.
    pub store_file: String,
    /// The embedded platform's database in the folder, if the node runs one.
    pub platform_file: Option<String>,
}

/// The backup's manifest.
pub fn read_manifest(from: &Path) -> Result<Manifest, BackupError> {
    let path = from.join(MANIFEST);
    let text = std::fs::read(&path).map_err(io_error(&path))?;
    serde_json::from_slice(&text).map_err(|e| BackupError::Manifest {
        path: path.display().to_string(),
        problem: e.to_string(),
    })
}
