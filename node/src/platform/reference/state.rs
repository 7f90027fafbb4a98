//! What the reference platform's handlers share: the embedded platform it serves, the
//! status codes it speaks, the key of its register's hashes; and the secret files it
//! reads (or, for the hash key, makes).

use std::{io::Write, path::Path, sync::Arc};

use tongban_proto::rules::region::{RegionPrefix, RegionTable};

use super::{config::ReferenceConfig, error::ReferenceError};
use crate::platform::{contract::status::StatusCodes, embedded::EmbeddedPlatform};

/// The state behind every route.
pub struct PlatformState {
    pub platform: Arc<EmbeddedPlatform>,
    pub codes: StatusCodes,
    pub id_hash_key: Arc<[u8]>,
    pub table: &'static RegionTable,
    pub region: RegionPrefix,
}

impl PlatformState {
    /// Opens the database (seeding it on first start when configured) and the hash key.
    pub async fn open(config: &ReferenceConfig) -> Result<Arc<Self>, ReferenceError> {
        let id_hash_key: Arc<[u8]> = read_or_make_key(&config.id_hash_key_file)?.into();
        let platform = EmbeddedPlatform::open(&config.database, &config.region)?;
        let table = RegionTable::embedded();
        if config.seed_residents > 0 {
            let seeded = platform
                .seed(
                    table,
                    &config.region,
                    config.seed_residents,
                    id_hash_key.clone(),
                )
                .await?;
            if seeded > 0 {
                tracing::info!(residents = seeded, "seeded synthetic residents");
            }
        }
        Ok(Arc::new(Self {
            platform,
            codes: config.status_codes.clone(),
            id_hash_key,
            table,
            region: config.region,
        }))
    }
}

fn secret_error(path: &Path, reason: impl std::fmt::Display) -> ReferenceError {
    ReferenceError::Secret {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// A secret from a file: its content without surrounding white space, not empty.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, ReferenceError> {
    let bytes = std::fs::read(path).map_err(|e| secret_error(path, e))?;
    let secret = bytes.trim_ascii();
    if secret.is_empty() {
        return Err(secret_error(path, "is empty"));
    }
    Ok(secret.to_vec())
}

/// The register's hash key: read, or made from 32 random bytes (hex, mode 0600) when
/// the file does not exist. At least 16 bytes.
pub fn read_or_make_key(path: &Path) -> Result<Vec<u8>, ReferenceError> {
    if !path.exists() {
        let mut bytes = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| secret_error(path, "no randomness to make a key"))?;
        let hex = tongban_proto::rules::digest::hex(&bytes);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| secret_error(path, e))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                file.write_all(format!("{hex}\n").as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| secret_error(path, e))?;
                tracing::info!(path = %path.display(), "made a new id hash key");
            }
            // Another process made it meanwhile: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(secret_error(path, e)),
        }
    }
    let key = read_secret(path)?;
    if key.len() < 16 {
        return Err(secret_error(path, "holds fewer than 16 bytes"));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_key_is_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("tongban-refkey-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("keys/id.key");
        let made = read_or_make_key(&path).unwrap();
        assert_eq!(made.len(), 64);
        assert_eq!(read_or_make_key(&path).unwrap(), made);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "short\n").unwrap();
        assert!(read_or_make_key(&path).is_err());
        std::fs::write(dir.join("empty"), " \n").unwrap();
        assert!(read_secret(&dir.join("empty")).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
