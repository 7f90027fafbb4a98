//! This region's signing keys (Ed25519, apart from the TLS key): the newest whose start
//! has passed signs what the issuer vouches for (`crate::issuer`) and what the node
//! sends other regions (`crate::gateway_client`), so a next key configured beside the
//! current one takes over by itself.

use std::time::{Duration, SystemTime};

use rustls_pki_types::{PrivatePkcs8KeyDer, pem::PemObject};
use tongban_proto::rules::{
    credentials::SigningKey,
    message_signature::{MessageSignature, Signed},
    region::RegionPrefix,
};

use crate::{config::IssuerConfig, error::NodeError};

const DEFAULT_ASSERTION_VALIDITY: Duration = Duration::from_secs(3600);

/// Why the issuer could not start.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("issuer.keys[{index}] {path}: {reason}")]
    Key {
        index: usize,
        path: String,
        reason: String,
    },
}

/// The node's signing keys, by start time.
pub struct IssuerKeys {
    keys: Vec<(SystemTime, SigningKey)>,
    pub(crate) assertion_validity: Duration,
}

impl IssuerKeys {
    /// Loads every configured key (PKCS#8 PEM).
    pub fn load(config: &IssuerConfig) -> Result<Self, IssuerError> {
        let mut keys = Vec::new();
        for (index, key) in config.keys.iter().enumerate() {
            let fail = |reason: String| IssuerError::Key {
                index,
                path: key.file.display().to_string(),
                reason,
            };
            let der =
                PrivatePkcs8KeyDer::from_pem_file(&key.file).map_err(|e| fail(e.to_string()))?;
            let signing = SigningKey::from_pkcs8(key.id.clone(), der.secret_pkcs8_der())
                .map_err(|e| fail(e.reason))?;
            keys.push((key.not_before.unwrap_or(SystemTime::UNIX_EPOCH), signing));
        }
        keys.sort_by_key(|(start, _)| *start);
        Ok(Self {
            keys,
            assertion_validity: config
                .assertion_validity
                .unwrap_or(DEFAULT_ASSERTION_VALIDITY),
        })
    }

    /// The key that signs now: the newest whose start has passed.
    pub(crate) fn current(&self) -> Result<&SigningKey, NodeError> {
        let now = SystemTime::now();
        self.keys
            .iter()
            .rev()
            .find(|(start, _)| *start <= now)
            .map(|(_, key)| key)
            .ok_or_else(|| {
                NodeError::NotIssuing("no signing key of this region is in force".into())
            })
    }

    /// Signs a message this node sends for `region` with the key that signs now.
    pub fn sign_message(
        &self,
        region: RegionPrefix,
        signed: &Signed<'_>,
    ) -> Result<MessageSignature, NodeError> {
        Ok(MessageSignature::sign(
            self.current()?,
            region,
            signed,
            SystemTime::now(),
        ))
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The ids of the keys, oldest first (for the reload's report).
    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|(_, k)| k.key_id.clone()).collect()
    }
}

/// The issuer keys in force, replaced whole by a reload (calls in flight keep the set
/// they started with).
pub type SharedIssuerKeys = crate::in_force::InForce<IssuerKeys>;
