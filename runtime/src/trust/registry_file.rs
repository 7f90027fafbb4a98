//! The national registry's file (TOML): which regions are members, where their nodes
//! listen, and the keys each region signs with. The gateway routes by it; each node
//! keeps a copy to verify what other regions send it (`tongban-signature`), so a
//! compromised gateway cannot speak for a region.

use std::{path::Path, time::SystemTime};

use serde::{Deserialize, Serialize};

use crate::process::config;

/// The registry file (TOML).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
    /// One entry per registered region prefix.
    #[serde(default, rename = "region")]
    pub regions: Vec<RegionEntry>,
}

/// One registered region.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegionEntry {
    /// GB/T 2260 prefix this node serves: 2 digits (province), 4 (prefecture) or 6 (county).
    pub prefix: String,
    /// The node's federation endpoints, `https://host:port`. Calls are balanced across them.
    pub endpoints: Vec<String>,
    /// Identity the node's certificate must carry. Defaults to
    /// `spiffe://tongban/region/<prefix>`.
    #[serde(default)]
    pub identity: Option<String>,
    /// The region's issuer keys (Ed25519), each with its validity window: what its
    /// identity assertions and licenses must be signed with. Register the next key
    /// beside the current one, windows overlapping, to roll over without an outage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issuer_keys: Vec<IssuerKeyEntry>,
}

/// One registered issuer key.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerKeyEntry {
    /// The key id the issuer names in what it signs.
    pub id: String,
    /// The raw 32-byte Ed25519 public key, hex; or see `ed25519_public_key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ed25519_public_key: Option<String>,
    /// A file holding the key in the same form (as `tongban certs` writes it), relative
    /// to the registry file's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ed25519_public_key_file: Option<std::path::PathBuf>,
    /// Start of the window (RFC 3339): objects issued before it are refused.
    #[serde(with = "humantime_serde")]
    pub not_before: SystemTime,
    /// End of the window (RFC 3339): after it the key verifies nothing.
    #[serde(with = "humantime_serde")]
    pub not_after: SystemTime,
}

/// A verified-usable issuer key of a region.
#[derive(Clone, Debug)]
pub struct IssuerKey {
    pub id: String,
    pub public_key: [u8; 32],
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl IssuerKey {
    /// Whether the key is in its window at `at`.
    pub fn valid_at(&self, at: SystemTime) -> bool {
        self.not_before <= at && at <= self.not_after
    }
}

/// An issuer key entry read and checked: its id, its 32-byte key (given, or read from
/// its file relative to `base`) and a window that ends after it starts.
pub fn parse_key(entry: &IssuerKeyEntry, base: &Path) -> Result<IssuerKey, String> {
    if entry.id.is_empty() || entry.id.len() > 64 {
        return Err("id must be 1 to 64 characters".into());
    }
    let hex = match (&entry.ed25519_public_key, &entry.ed25519_public_key_file) {
        (Some(hex), None) => hex.clone(),
        (None, Some(file)) => {
            let path = config::resolve_against(base, file);
            std::fs::read_to_string(&path)
                .map_err(|e| format!("ed25519_public_key_file {}: {e}", path.display()))?
                .trim()
                .to_owned()
        }
        _ => {
            return Err(
                "give exactly one of ed25519_public_key and ed25519_public_key_file".into(),
            );
        }
    };
    let bytes = tongban_proto::rules::digest::unhex(&hex)
        .ok_or("ed25519_public_key must be 64 hex digits (the raw 32-byte key)")?;
    let public_key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "ed25519_public_key must be 64 hex digits (the raw 32-byte key)")?;
    if entry.not_after <= entry.not_before {
        return Err("not_after must be later than not_before".into());
    }
    Ok(IssuerKey {
        id: entry.id.clone(),
        public_key,
        not_before: entry.not_before,
        not_after: entry.not_after,
    })
}
