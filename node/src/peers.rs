//! Other regions' keys, from this node's own copy of the national registry: what a
//! delivery or status push must be signed with, and which codes its signer owns. The
//! gateway relays calls but cannot vouch for them — a compromised gateway could claim
//! any origin — so the node checks the sending region's signature against keys it got
//! from the registry, not from the gateway, and asks ownership of the signer as well as
//! of the origin the gateway verified.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tongban_proto::rules::region::{RegionCode, RegionPrefix};
use tongban_runtime::{
    process::config::{self, ConfigError},
    trust::registry_file::{IssuerKey, RegistryFile, parse_key},
};

use crate::verified_origin::VerifiedOrigin;

/// Where the node's copy of the registry is, and how fresh a signature must be.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PeersConfig {
    /// The national registry (the gateway's registry file, or a copy of it): the
    /// regions and their issuer keys, with windows. Read again by a reload and watched.
    pub registry: PathBuf,
    /// How old a signature may be when it arrives (the sender signs each attempt
    /// anew); older ones are refused, so a recorded call cannot be replayed later.
    #[serde(
        default = "default_max_age",
        with = "humantime_serde",
        skip_serializing_if = "is_default_max_age"
    )]
    pub max_age: Duration,
}

fn default_max_age() -> Duration {
    tongban_proto::rules::message_signature::DEFAULT_MAX_AGE
}

fn is_default_max_age(age: &Duration) -> bool {
    *age == default_max_age()
}

impl PeersConfig {
    pub fn at(registry: PathBuf) -> Self {
        Self {
            registry,
            max_age: default_max_age(),
        }
    }
}

/// The registered regions and their keys.
#[derive(Debug, Default)]
pub struct PeerKeys {
    keys: HashMap<(RegionPrefix, String), IssuerKey>,
    prefixes: Vec<RegionPrefix>,
}

impl PeerKeys {
    /// Reads the registry at `path` (keys in files resolved against its folder).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file: RegistryFile = config::load(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut peers = Self::default();
        for (i, entry) in file.regions.iter().enumerate() {
            let prefix = RegionPrefix::parse(&entry.prefix)
                .map_err(|e| ConfigError::field(path, &format!("region[{i}].prefix"), e))?;
            if peers.prefixes.contains(&prefix) {
                return Err(ConfigError::field(
                    path,
                    &format!("region[{i}].prefix"),
                    format!("prefix {prefix} is registered twice"),
                ));
            }
            peers.prefixes.push(prefix);
            for (k, key) in entry.issuer_keys.iter().enumerate() {
                let key = parse_key(key, base).map_err(|e| {
                    ConfigError::field(path, &format!("region[{i}].issuer_keys[{k}]"), e)
                })?;
                peers.keys.insert((prefix, key.id.clone()), key);
            }
        }
        if peers.prefixes.is_empty() {
            return Err(ConfigError::field(
                path,
                "region",
                "no region is registered: every signed call would be refused",
            ));
        }
        Ok(peers)
    }

    /// Region `region`'s key `key_id`, if registered.
    pub fn key(&self, region: &RegionPrefix, key_id: &str) -> Option<&IssuerKey> {
        self.keys.get(&(*region, key_id.to_owned()))
    }

    /// What the registered `region` owns: its codes less those of the regions
    /// registered inside it (a city with a node of its own).
    pub fn owner(&self, region: RegionPrefix) -> VerifiedOrigin {
        let carve_outs = self
            .prefixes
            .iter()
            .filter(|p| p.len() > region.len() && p.as_str().starts_with(region.as_str()))
            .copied()
            .collect();
        VerifiedOrigin::new(region, carve_outs)
    }

    /// The registered region whose node handles `code`: the longest registered prefix
    /// containing it.
    pub fn member_of(&self, code: &RegionCode) -> Option<RegionPrefix> {
        self.prefixes
            .iter()
            .filter(|p| p.contains(code))
            .max_by_key(|p| p.len())
            .copied()
    }

    /// Number of registered regions and of their keys (for the reload's report).
    pub fn counts(&self) -> (usize, usize) {
        (self.prefixes.len(), self.keys.len())
    }
}

/// The peers' keys in force.
pub type SharedPeerKeys = crate::in_force::InForce<PeerKeys>;

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("registry.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    const KEY: &str = "\"0000000000000000000000000000000000000000000000000000000000000001\"";

    #[test]
    fn keys_and_ownership_come_from_the_registry_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            &format!(
                "[[region]]\nprefix = \"44\"\nendpoints = [\"https://127.0.0.1:1\"]\n\
                 [[region.issuer_keys]]\nid = \"44-k1\"\ned25519_public_key = {KEY}\n\
                 not_before = \"2026-01-01T00:00:00Z\"\nnot_after = \"2027-01-01T00:00:00Z\"\n\
                 [[region]]\nprefix = \"4403\"\nendpoints = [\"https://127.0.0.1:2\"]\n"
            ),
        );
        let peers = PeerKeys::load(&path).unwrap();
        let p44 = RegionPrefix::parse("44").unwrap();
        assert!(peers.key(&p44, "44-k1").is_some());
        assert!(peers.key(&p44, "44-k2").is_none());
        assert!(
            peers
                .key(&RegionPrefix::parse("4403").unwrap(), "44-k1")
                .is_none()
        );
        let owner = peers.owner(p44);
        assert!(owner.owns(&RegionCode::parse("440105").unwrap()));
        assert!(!owner.owns(&RegionCode::parse("440305").unwrap()));
        assert_eq!(peers.counts(), (2, 1));
    }

    #[test]
    fn an_empty_or_broken_registry_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = PeerKeys::load(&write(dir.path(), "")).unwrap_err();
        assert!(err.to_string().contains("no region"), "{err}");
        let err = PeerKeys::load(&write(
            dir.path(),
            "[[region]]\nprefix = \"44\"\nendpoints = []\n[[region.issuer_keys]]\nid = \"k\"\n\
             ed25519_public_key = \"00\"\nnot_before = \"2026-01-01T00:00:00Z\"\n\
             not_after = \"2027-01-01T00:00:00Z\"\n",
        ))
        .unwrap_err();
        assert!(err.to_string().contains("issuer_keys[0]"), "{err}");
    }
}
