//! A node's state backed up into a folder and restored from one.

use std::path::{Path, PathBuf};

use super::{
    error::{BackupError, io_error},
    manifest::{MANIFEST, Manifest, PLATFORM_SQLITE, STORE_DUMP, STORE_SQLITE, read_manifest},
    postgres::PgTools,
    sqlite,
};
use crate::{
    config::{NodeConfig, PlatformConfig, StoreConfig},
    platform::embedded::{EmbeddedPlatform, KeyBindingError, fingerprint},
    sqlite::now_ms,
};

/// Backs up the node `config` describes into the folder `out` (created; must be empty
/// or absent). The node may be running: both kinds copy a consistent snapshot.
pub async fn backup(
    config: &NodeConfig,
    out: &Path,
    tools: &PgTools,
) -> Result<Manifest, BackupError> {
    if out.exists()
        && std::fs::read_dir(out)
            .map_err(io_error(out))?
            .next()
            .is_some()
    {
        return Err(BackupError::Refused(format!(
            "{} is not empty; back up into a new folder",
            out.display()
        )));
    }
    ensure_store_exists(config, tools).await?;
    std::fs::create_dir_all(out).map_err(io_error(out))?;
    let store = crate::server::open_store(&config.store)
        .await
        .map_err(|e| BackupError::Tool(e.to_string()))?;
    let key = store.id_hash_key().await?;
    let (store_kind, store_file) = match &config.store {
        StoreConfig::Sqlite(path) => {
            sqlite::copy(path, &out.join(STORE_SQLITE)).await?;
            ("sqlite", STORE_SQLITE)
        }
        StoreConfig::Postgres(pg) => {
            tools.dump(&pg.database(), &out.join(STORE_DUMP)).await?;
            ("postgres", STORE_DUMP)
        }
    };
    let platform_file = match embedded_database(config) {
        Some(path) => {
            sqlite::copy(path, &out.join(PLATFORM_SQLITE)).await?;
            Some(PLATFORM_SQLITE.to_owned())
        }
        None => None,
    };
    let manifest = Manifest {
        store_kind: store_kind.to_owned(),
        region: config.region.to_string(),
        taken_ms: now_ms(),
        id_hash_key_fingerprint: fingerprint(&key),
        store_file: store_file.to_owned(),
        platform_file,
    };
    let path = out.join(MANIFEST);
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Manifest {
        path: path.display().to_string(),
        problem: e.to_string(),
    })?;
    std::fs::write(&path, text).map_err(io_error(&path))?;
    Ok(manifest)
}

/// Restores the backup in `from` into the databases `config` names, which must be new:
/// an absent SQLite file, an empty PostgreSQL database. The node must not be running.
/// Everything is checked before anything is written, so a refused restore leaves the
/// targets as they were; afterwards, that the restored store holds the secret the
/// backup recorded and the restored register was made with it.
pub async fn restore(
    config: &NodeConfig,
    from: &Path,
    tools: &PgTools,
) -> Result<Manifest, BackupError> {
    let manifest = read_manifest(from)?;
    let register = check_restore(config, &manifest, tools).await?;
    match &config.store {
        StoreConfig::Sqlite(path) => {
            sqlite::restore(&from.join(&manifest.store_file), path).await?;
        }
        StoreConfig::Postgres(pg) => {
            tools
                .restore(&pg.database(), &from.join(&manifest.store_file))
                .await?;
        }
    }
    if let Some((path, file)) = register {
        sqlite::restore(&from.join(file), path).await?;
    }
    let store = crate::server::open_store(&config.store)
        .await
        .map_err(|e| BackupError::Tool(e.to_string()))?;
    let key = store.id_hash_key().await?;
    let restored = fingerprint(&key);
    if restored != manifest.id_hash_key_fingerprint {
        return Err(BackupError::Refused(format!(
            "the restored store's keyed-hash secret has fingerprint {restored}, the backup \
             recorded {}",
            manifest.id_hash_key_fingerprint
        )));
    }
    // The register's hashes against the store's secret, as the node checks at start.
    if let Some(path) = embedded_database(config) {
        let prefix = config
            .prefix()
            .map_err(|e| BackupError::Tool(e.to_string()))?;
        let platform = EmbeddedPlatform::open(path, &prefix)?;
        match platform.bind_id_hash_key(key.into()).await {
            Ok(()) => {}
            Err(KeyBindingError::Store(e)) => return Err(e.into()),
            Err(mismatch) => {
                return Err(BackupError::Refused(format!(
                    "{}: {mismatch}",
                    path.display()
                )));
            }
        }
    }
    Ok(manifest)
}

/// What a restore of `manifest` into `config`'s databases would be refused for, found
/// before anything is written; the register's target and its file in the backup, if
/// one is restored.
async fn check_restore<'a>(
    config: &'a NodeConfig,
    manifest: &'a Manifest,
    tools: &PgTools,
) -> Result<Option<(&'a PathBuf, &'a String)>, BackupError> {
    if manifest.region != config.region.to_string() {
        return Err(BackupError::Refused(format!(
            "the backup is of region {}, the config's is {}",
            manifest.region, config.region
        )));
    }
    match (&config.store, manifest.store_kind.as_str()) {
        (StoreConfig::Sqlite(path), "sqlite") => sqlite::ensure_absent(path)?,
        (StoreConfig::Postgres(pg), "postgres") => tools.ensure_empty(&pg.database()).await?,
        (_, kind) => {
            return Err(BackupError::Refused(format!(
                "the backup is of a {kind} store; the config names another kind (move \
                 state between kinds by filing nothing new and draining the outbox first)"
            )));
        }
    }
    match (embedded_database(config), &manifest.platform_file) {
        (Some(path), Some(file)) => {
            if config.store.sqlite_path() == Some(path.as_path()) {
                return Err(BackupError::Refused(format!(
                    "the config names {} for both the store and the platform",
                    path.display()
                )));
            }
            sqlite::ensure_absent(path)?;
            Ok(Some((path, file)))
        }
        (Some(_), None) => Err(BackupError::Refused(
            "the config runs the embedded platform but the backup holds no register".into(),
        )),
        // A node now in front of its province's platform keeps only its store.
        (None, _) => Ok(None),
    }
}

/// Refuses to back up a store that is not there (a wrong path or URL in the config),
/// which opening it would otherwise create, with a fresh secret, and back up empty.
async fn ensure_store_exists(config: &NodeConfig, tools: &PgTools) -> Result<(), BackupError> {
    let missing = match &config.store {
        StoreConfig::Sqlite(path) => (!path.is_file()).then(|| path.display().to_string()),
        StoreConfig::Postgres(pg) => {
            let db = pg.database();
            (!tools.holds_schema(&db).await?).then(|| db.display_url())
        }
    };
    match missing {
        Some(at) => Err(BackupError::Refused(format!(
            "{at} holds no node store; check the config's [store]"
        ))),
        None => Ok(()),
    }
}

fn embedded_database(config: &NodeConfig) -> Option<&PathBuf> {
    match &config.platform {
        PlatformConfig::Embedded { database, .. } => Some(database),
        PlatformConfig::Http(_) => None,
    }
}
