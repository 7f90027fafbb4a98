//! Node settings, as every backend keeps them: the keyed-hash secret for ID numbers and
//! small named values (the catalog copy).

use crate::db_error::StoreError;

/// The setting that holds the keyed-hash secret.
pub(super) const ID_HASH_KEY: &str = "id_hash_key";

/// A fresh keyed-hash secret: 32 random bytes.
pub(super) fn fresh_secret() -> Result<Vec<u8>, StoreError> {
    let mut key = vec![0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
        .map_err(|_| StoreError::Random)?;
    Ok(key)
}
