//! The federation's keys besides its TLS certificates: each node's issuer key(s)
//! (Ed25519, registered for its region with a window around now) and the gateways'
//! shared hash secret.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, SystemTime},
};

use tongban_runtime::trust::pki::IssuerKey;

use crate::{
    config::pki::Pki, error::KitError, launch::sockets::NodeSockets, spec::FederationSpec,
};

/// How long the federation's certificates and issuer keys are valid.
pub(crate) const VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);

/// One issuer key of a node.
pub(crate) struct NodeKey {
    pub key: IssuerKey,
    pub file: PathBuf,
    /// When the node starts signing with it (`None`: at once).
    pub starts: Option<SystemTime>,
}

/// The keys written for a federation.
pub(crate) struct Keys {
    /// The moment registry windows are counted from.
    pub now: SystemTime,
    by_node: BTreeMap<String, Vec<NodeKey>>,
    pub hash_key: PathBuf,
}

impl Keys {
    /// Writes each node's issuer key (and, for a rollover, the next one) and the
    /// gateways' hash secret into `pki`.
    pub fn write(
        spec: &FederationSpec,
        pki: &Pki,
        nodes: &[NodeSockets],
    ) -> Result<Self, KitError> {
        let now = SystemTime::now();
        let mut by_node = BTreeMap::new();
        for node in nodes {
            let mut keys = Vec::new();
            let (key, file) = pki.issuer_key(&format!("{}-k1", node.prefix))?;
            keys.push(NodeKey {
                key,
                file,
                starts: None,
            });
            if let Some(after) = spec.rollover_after {
                let (key, file) = pki.issuer_key(&format!("{}-k2", node.prefix))?;
                keys.push(NodeKey {
                    key,
                    file,
                    starts: Some(now + after),
                });
            }
            by_node.insert(node.prefix.to_string(), keys);
        }
        let hash_key = pki.hash_secret("gateway-hash.key")?;
        Ok(Self {
            now,
            by_node,
            hash_key,
        })
    }

    /// The issuer keys of the node `prefix`.
    pub fn of(&self, prefix: &str) -> Result<&[NodeKey], KitError> {
        self.by_node
            .get(prefix)
            .map(Vec::as_slice)
            .ok_or_else(|| KitError::Other(format!("no issuer key for {prefix}")))
    }
}
