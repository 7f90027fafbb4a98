//! The node registry: which node endpoints serve which region prefix.
//!
//! Routing takes the longest registered prefix of the target code (6, then 4, then 2
//! digits), so a province can delegate a city to its own node later. Routes to the same
//! node share one [`NodePool`] (lazily connected HTTP/2, rotated over the node's
//! endpoints) that is reused by every call.

use std::{collections::HashMap, path::Path, sync::Arc};

use serde::{Deserialize, Serialize};
use tongban_proto::region::{RegionCode, RegionPrefix};
use tongban_runtime::{
    config::{self, ConfigError},
    identity::PeerIdentity,
    tls::{ClientSettings, TlsFiles},
};

use crate::upstream::{NodePool, UpstreamError};

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
}

/// A region's route: where to send its calls, and the connection pool to use.
#[derive(Debug)]
pub struct Route {
    pub prefix: RegionPrefix,
    pub identity: PeerIdentity,
    pub endpoints: Vec<String>,
    pub pool: Arc<NodePool>,
}

/// The loaded registry.
#[derive(Debug, Default)]
pub struct Registry {
    routes: HashMap<String, Arc<Route>>,
}

impl Registry {
    /// Loads and validates a registry file and builds (lazy) channels for every route.
    pub fn load(
        path: &Path,
        tls_files: &TlsFiles,
        settings: &ClientSettings,
    ) -> Result<Self, ConfigError> {
        let file: RegistryFile = config::load(path)?;
        Self::build(&file, path, tls_files, settings)
    }

    /// Validates `file` (named `origin` in errors) and builds its routes.
    pub fn build(
        file: &RegistryFile,
        origin: &Path,
        tls_files: &TlsFiles,
        settings: &ClientSettings,
    ) -> Result<Self, ConfigError> {
        let mut routes = HashMap::with_capacity(file.regions.len());
        // One connection pool per node, however many prefixes route to it: a province
        // that registers every county code must not open thousands of pools.
        let mut pools: HashMap<(Vec<String>, String), Arc<NodePool>> = HashMap::new();
        let tls_config = tls_files
            .client_rustls_config()
            .map_err(|e| ConfigError::field(origin, "tls", e))?;
        for (i, entry) in file.regions.iter().enumerate() {
            let field = |name: &str| format!("region[{i}].{name}");
            let prefix = RegionPrefix::parse(&entry.prefix)
                .map_err(|e| ConfigError::field(origin, &field("prefix"), e))?;
            let identity = match &entry.identity {
                None => PeerIdentity::Region(prefix),
                Some(uri) => match PeerIdentity::from_uri(uri) {
                    Ok(id @ PeerIdentity::Region(_)) => id,
                    Ok(PeerIdentity::Gateway) => {
                        return Err(ConfigError::field(
                            origin,
                            &field("identity"),
                            "must be a region identity",
                        ));
                    }
                    Err(e) => return Err(ConfigError::field(origin, &field("identity"), e)),
                },
            };
            if entry.endpoints.is_empty() {
                return Err(ConfigError::field(
                    origin,
                    &field("endpoints"),
                    "at least one endpoint is required",
                ));
            }
            let pool_key = (entry.endpoints.clone(), identity.dns_name());
            let pool = match pools.get(&pool_key) {
                Some(pool) => pool.clone(),
                None => {
                    let pool = NodePool::new(
                        &entry.endpoints,
                        tls_config.clone(),
                        &identity.dns_name(),
                        settings,
                    )
                    .map_err(|e| {
                        let name = match &e {
                            UpstreamError::BadEndpoint { index, .. } => {
                                format!("endpoints[{index}]")
                            }
                            _ => "identity".to_owned(),
                        };
                        ConfigError::field(origin, &field(&name), e)
                    })?;
                    let pool = Arc::new(pool);
                    pools.insert(pool_key, pool.clone());
                    pool
                }
            };
            let route = Route {
                prefix,
                identity,
                endpoints: entry.endpoints.clone(),
                pool,
            };
            if routes
                .insert(prefix.as_str().to_owned(), Arc::new(route))
                .is_some()
            {
                return Err(ConfigError::field(
                    origin,
                    &field("prefix"),
                    format!("prefix {prefix} is registered twice"),
                ));
            }
        }
        Ok(Self { routes })
    }

    /// The route of the longest registered prefix of `code`.
    pub fn lookup(&self, code: &RegionCode) -> Option<Arc<Route>> {
        let code = code.as_str();
        [6, 4, 2]
            .into_iter()
            .find_map(|len| self.routes.get(&code[..len]))
            .cloned()
    }

    /// Number of registered prefixes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tongban_runtime::pki::{self, DevCa};

    fn tls_files() -> TlsFiles {
        tongban_runtime::tls::install_crypto_provider();
        // A folder per call: tests run in parallel and must not mix keys.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("tongban-registry-test-{}-{n}", std::process::id()));
        let ca = DevCa::generate("registry test CA").unwrap();
        ca.write(&dir).unwrap();
        let leaf = ca
            .issue(&PeerIdentity::Gateway, std::time::Duration::from_secs(600))
            .unwrap();
        let (cert, key) = pki::write_leaf(&dir, &PeerIdentity::Gateway, &leaf).unwrap();
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert,
            key,
        }
    }

    fn entry(prefix: &str, endpoint: &str) -> RegionEntry {
        RegionEntry {
            prefix: prefix.into(),
            endpoints: vec![endpoint.into()],
            identity: None,
        }
    }

    fn build(regions: Vec<RegionEntry>) -> Result<Registry, ConfigError> {
        Registry::build(
            &RegistryFile { regions },
            Path::new("registry.toml"),
            &tls_files(),
            &ClientSettings::default(),
        )
    }

    #[tokio::test]
    async fn longest_registered_prefix_wins() {
        let registry = build(vec![
            entry("44", "https://127.0.0.1:1"),
            entry("4403", "https://127.0.0.1:2"),
            entry("440305", "https://127.0.0.1:3"),
        ])
        .unwrap();
        let route = |c: &str| {
            registry
                .lookup(&RegionCode::parse(c).unwrap())
                .map(|r| r.prefix.to_string())
        };
        assert_eq!(route("440305").as_deref(), Some("440305"));
        assert_eq!(route("440306").as_deref(), Some("4403"));
        assert_eq!(route("440100").as_deref(), Some("44"));
        assert_eq!(route("310000"), None);
    }

    #[tokio::test]
    async fn bad_entries_name_their_field() {
        let err = build(vec![entry("4", "https://127.0.0.1:1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("region[0].prefix"), "{err}");
        let err = build(vec![entry("44", "http://127.0.0.1:1")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("region[0].endpoints[0]") && err.contains("https"),
            "{err}"
        );
        let err = build(vec![
            entry("44", "https://127.0.0.1:1"),
            entry("44", "https://127.0.0.1:2"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("region[1].prefix") && err.contains("twice"),
            "{err}"
        );
        let mut no_endpoints = entry("44", "https://127.0.0.1:1");
        no_endpoints.endpoints.clear();
        let err = build(vec![no_endpoints]).unwrap_err().to_string();
        assert!(err.contains("region[0].endpoints"), "{err}");
    }
}
