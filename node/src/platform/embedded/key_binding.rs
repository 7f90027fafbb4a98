//! The register's hashes and the node's keyed-hash secret must belong together.
//!
//! Residents are found by a keyed hash of their ID number, keyed by the secret in the
//! node's store. Restore the store without the register (or the register without the
//! store) and every hash misses: every resident "unknown", every filing refused, with
//! nothing in the logs. So the register keeps a fingerprint of the secret it was made
//! with, checked at every start; a register from before the fingerprint is checked
//! against the ID numbers it keeps.

use std::sync::Arc;

use ring::hmac;
use rusqlite::{OptionalExtension, params};
use tongban_proto::rules::resident_id::ResidentId;

use super::database::EmbeddedPlatform;
use crate::sqlite::StoreError;

/// The setting that holds the fingerprint.
const FINGERPRINT: &str = "id_hash_key_fingerprint";
/// Residents whose stored hash is recomputed when a register has no fingerprint yet.
const SAMPLE: u32 = 64;

/// Register and store disagree, or the check could not be made.
#[derive(Debug, thiserror::Error)]
pub enum KeyBindingError {
    #[error(
        "the embedded register's ID-number hashes were made with another keyed-hash secret \
         than the one in the node's store ({evidence}); restore the store and the register \
         from the same backup (see the README's \"Backup and restore\")"
    )]
    Mismatch { evidence: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A fingerprint of `key`: shows which secret made the hashes without revealing it.
pub fn fingerprint(key: &[u8]) -> String {
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, key),
        b"tongban register key fingerprint v1",
    );
    let full = tongban_proto::rules::digest::hex(tag.as_ref());
    full[..32].to_owned()
}

impl EmbeddedPlatform {
    /// Binds the register to the node's keyed-hash secret: refuses a register made with
    /// another one; records the fingerprint on first use.
    pub async fn bind_id_hash_key(&self, key: Arc<[u8]>) -> Result<(), KeyBindingError> {
        let expected = fingerprint(&key);
        let found = self
            .db
            .call(move |conn| {
                let stored: Option<String> = conn
                    .query_row(
                        "SELECT value FROM register_settings WHERE name = ?1",
                        [FINGERPRINT],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(stored) = stored {
                    return Ok((stored == expected)
                        .then_some(())
                        .ok_or(format!("fingerprint {stored}, the store's {expected}")));
                }
                let mut stmt = conn.prepare(
                    "SELECT id_hash, id_number FROM residents
                     WHERE id_number IS NOT NULL LIMIT ?1",
                )?;
                let rows = stmt.query_map([SAMPLE], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?;
                let (mut checked, mut wrong) = (0u32, 0u32);
                for row in rows {
                    let (hash, number) = row?;
                    // Stored numbers were checked on their way in; only their hash is
                    // in question here, so no date bound.
                    let table = tongban_proto::rules::region::RegionTable::embedded();
                    let Ok(id) = ResidentId::parse(&number, table, time::Date::MAX) else {
                        continue;
                    };
                    checked += 1;
                    if id.keyed_hash(&key) != hash {
                        wrong += 1;
                    }
                }
                if wrong > 0 {
                    return Ok(Err(format!(
                        "{wrong} of {checked} residents' hashes do not match"
                    )));
                }
                conn.execute(
                    "INSERT INTO register_settings (name, value) VALUES (?1, ?2)",
                    params![FINGERPRINT, expected],
                )?;
                Ok(Ok(()))
            })
            .await?;
        found.map_err(|evidence| KeyBindingError::Mismatch { evidence })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_differ_by_key_and_hide_it() {
        let a = fingerprint(b"one secret");
        assert_eq!(a, fingerprint(b"one secret"));
        assert_ne!(a, fingerprint(b"another secret"));
        assert_eq!(a.len(), 32);
    }

    /// A register seeded under one secret refuses another, before and after its
    /// fingerprint is recorded.
    #[tokio::test]
    async fn a_register_refuses_a_store_with_another_secret() {
        use tongban_proto::rules::region::{RegionPrefix, RegionTable};
        let dir = std::env::temp_dir().join(format!("tongban-keybind-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let prefix = RegionPrefix::parse("44").unwrap();
        let platform = EmbeddedPlatform::open(&dir.join("platform.sqlite"), &prefix).unwrap();
        let (a, b): (Arc<[u8]>, Arc<[u8]>) = (Arc::from(&[1u8; 32][..]), Arc::from(&[2u8; 32][..]));
        platform
            .seed(RegionTable::embedded(), &prefix, 20, a.clone())
            .await
            .unwrap();
        // No fingerprint yet: the hashes themselves give the other secret away.
        let refused = platform.bind_id_hash_key(b.clone()).await.unwrap_err();
        assert!(refused.to_string().contains("do not match"), "{refused}");
        platform.bind_id_hash_key(a.clone()).await.unwrap();
        // Now by the fingerprint; and the right secret keeps opening it.
        let refused = platform.bind_id_hash_key(b).await.unwrap_err();
        assert!(
            matches!(refused, KeyBindingError::Mismatch { .. }),
            "{refused}"
        );
        platform.bind_id_hash_key(a).await.unwrap();
        drop(platform);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
