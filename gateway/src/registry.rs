//! The node registry: which node endpoints serve which region prefix.
//!
//! Routing takes the longest registered prefix of the target code (6, then 4, then 2
//! digits), so a province can delegate a city to its own node later. Routes to the same
//! node share one [`NodePool`] (lazily connected HTTP/2, rotated over the node's
//! endpoints) that is reused by every call.

use std::{collections::HashMap, path::Path, sync::Arc};

use tongban_proto::rules::region::{RegionCode, RegionPrefix};
pub use tongban_runtime::trust::registry_file::{
    IssuerKey, IssuerKeyEntry, RegionEntry, RegistryFile, parse_key,
};
use tongban_runtime::{
    process::config::{self, ConfigError},
    trust::identity::PeerIdentity,
    trust::tls::{ClientSettings, TlsFiles},
};

use crate::{
    carve_outs::CarveOuts,
    upstream::{NodePool, UpstreamError},
};

/// A region's route: where to send its calls, and the connection pool to use.
#[derive(Debug)]
pub struct Route {
    pub prefix: RegionPrefix,
    pub identity: PeerIdentity,
    pub endpoints: Vec<String>,
    pub pool: Arc<NodePool>,
    /// The region's registered issuer keys.
    pub issuer_keys: Vec<IssuerKey>,
}

/// The loaded registry.
#[derive(Debug, Default)]
pub struct Registry {
    /// Looked up twice per call (origin and target), up to three probes each: with a
    /// fast hasher rather than SipHash, whose flooding resistance buys nothing for keys
    /// the operator's file chose.
    routes: HashMap<String, Arc<Route>, foldhash::fast::RandomState>,
    /// The identities of the registered nodes: the only regions admitted as callers.
    members: std::collections::HashSet<PeerIdentity, foldhash::fast::RandomState>,
    /// Each member's carve-outs, ready to send beside its verified origin.
    carve_outs: CarveOuts,
    /// The TLS files the pools were built with: a reload that changes any of them
    /// (a reissued certificate, a new revocation list) builds new pools, so new
    /// connections present and check what is now in force.
    tls_fingerprint: [u8; 32],
    /// What it was built from (the file and the client TLS), so a reload can rebuild
    /// one part while the other's new file is refused.
    file: RegistryFile,
    client_tls: Option<ClientTls>,
}

/// The client side of the TLS files a registry's pools use: their fingerprint and the
/// configuration built from them.
pub type ClientTls = ([u8; 32], Arc<rustls::ClientConfig>);

/// The registry in force, replaced whole on reload. A call takes the current one once,
/// so a reload never changes a call halfway, and calls in flight keep their routes (and
/// connections) until they end. Held in a watch so each connection can learn of a
/// reload without asking on every call.
#[derive(Clone, Debug)]
pub struct SharedRegistry(Arc<tokio::sync::watch::Sender<Arc<Registry>>>);

impl SharedRegistry {
    pub fn new(registry: Registry) -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(Arc::new(
            registry,
        ))))
    }

    /// The registry in force.
    pub fn current(&self) -> Arc<Registry> {
        self.0.borrow().clone()
    }

    /// Puts `registry` in force for the calls that start from now on.
    pub fn replace(&self, registry: Registry) {
        self.0.send_replace(Arc::new(registry));
    }

    /// Told of every registry put in force from now on.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<Arc<Registry>> {
        self.0.subscribe()
    }
}

impl Registry {
    /// Loads and validates a registry file and builds (lazy) channels for every route.
    pub fn load(
        path: &Path,
        tls_files: &TlsFiles,
        settings: &ClientSettings,
    ) -> Result<Self, ConfigError> {
        let file: RegistryFile = config::load(path)?;
        Self::build(&file, path, tls_files, settings, None)
    }

    /// Loads the registry file again, keeping the connection pools (their connections
    /// and endpoint health) of the nodes `previous` already routes to.
    pub fn reload(
        path: &Path,
        tls_files: &TlsFiles,
        settings: &ClientSettings,
        previous: &Registry,
    ) -> Result<Self, ConfigError> {
        let file: RegistryFile = config::load(path)?;
        Self::build(&file, path, tls_files, settings, Some(previous))
    }

    /// Validates `file` (named `origin` in errors) and builds its routes, reusing the
    /// pools of `previous` for nodes it already knows.
    pub fn build(
        file: &RegistryFile,
        origin: &Path,
        tls_files: &TlsFiles,
        settings: &ClientSettings,
        previous: Option<&Registry>,
    ) -> Result<Self, ConfigError> {
        let tls_fingerprint = tls_files
            .fingerprint()
            .map_err(|e| ConfigError::field(origin, "tls", e))?;
        let tls_config = tls_files
            .client_rustls_config()
            .map_err(|e| ConfigError::field(origin, "tls", e))?;
        Self::build_with(
            file,
            origin,
            (tls_fingerprint, tls_config),
            settings,
            previous,
        )
    }

    /// As [`Self::build`], with client TLS already read (a reload whose new TLS files
    /// are refused builds with those in force).
    pub fn build_with(
        file: &RegistryFile,
        origin: &Path,
        (tls_fingerprint, tls_config): ClientTls,
        settings: &ClientSettings,
        previous: Option<&Registry>,
    ) -> Result<Self, ConfigError> {
        let mut routes = HashMap::with_capacity_and_hasher(file.regions.len(), Default::default());
        // One connection pool per node, however many prefixes route to it: a province
        // that registers every county code must not open thousands of pools.
        let mut pools: Pools = previous
            .into_iter()
            .filter(|p| p.tls_fingerprint == tls_fingerprint)
            .flat_map(|p| p.routes())
            .map(|r| ((r.endpoints.clone(), r.identity.dns_name()), r.pool.clone()))
            .collect();
        for (index, entry) in file.regions.iter().enumerate() {
            let at = EntryAt { origin, index };
            let route = build_route(entry, &at, &tls_config, settings, &mut pools)?;
            let prefix = route.prefix;
            if routes
                .insert(prefix.as_str().to_owned(), Arc::new(route))
                .is_some()
            {
                return Err(at.invalid("prefix", format!("prefix {prefix} is registered twice")));
            }
        }
        let members = routes.values().map(|r| r.identity.clone()).collect();
        let carve_outs = CarveOuts::of(routes.values().map(|r| (&r.prefix, &r.identity)));
        Ok(Self {
            routes,
            members,
            carve_outs,
            tls_fingerprint,
            file: file.clone(),
            client_tls: Some((tls_fingerprint, tls_config)),
        })
    }

    /// The file this registry was built from.
    pub fn file(&self) -> &RegistryFile {
        &self.file
    }

    /// The client TLS its pools use (none for an empty default registry).
    pub fn client_tls(&self) -> Option<ClientTls> {
        self.client_tls.clone()
    }

    /// Whether `identity` is a registered node's (the gateway's own identity is not a
    /// member: what a gateway certificate may call is the method table's matter).
    pub fn is_member(&self, identity: &PeerIdentity) -> bool {
        self.members.contains(identity)
    }

    /// The registered prefixes inside member `identity`'s region that belong to other
    /// members, as the `tongban-verified-carve-outs` value (none: `None`).
    pub fn carve_outs(&self, identity: &PeerIdentity) -> Option<&http::HeaderValue> {
        self.carve_outs.of_member(identity)
    }

    /// The route of the longest registered prefix of `code`.
    pub fn lookup(&self, code: &RegionCode) -> Option<Arc<Route>> {
        let code = code.as_str();
        [6, 4, 2]
            .into_iter()
            .find_map(|len| self.routes.get(&code[..len]))
            .cloned()
    }

    /// Every route, in no particular order.
    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.values()
    }

    /// Number of registered prefixes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// The pools being built, by node: its endpoints and the name its certificate carries.
type Pools = HashMap<(Vec<String>, String), Arc<NodePool>>;

/// Where in the registry file an entry is, for errors that name its field.
struct EntryAt<'a> {
    origin: &'a Path,
    index: usize,
}

impl EntryAt<'_> {
    /// `problem` with the entry's field `name` (`region[2].endpoints`).
    fn invalid(&self, name: &str, problem: impl std::fmt::Display) -> ConfigError {
        let field = format!("region[{}].{name}", self.index);
        ConfigError::field(self.origin, &field, problem)
    }
}

/// One entry's route, checked field by field in the file's order, its pool shared with
/// any earlier entry for the same node.
fn build_route(
    entry: &RegionEntry,
    at: &EntryAt<'_>,
    tls_config: &Arc<rustls::ClientConfig>,
    settings: &ClientSettings,
    pools: &mut Pools,
) -> Result<Route, ConfigError> {
    let prefix = RegionPrefix::parse(&entry.prefix).map_err(|e| at.invalid("prefix", e))?;
    let identity = entry_identity(entry, prefix, at)?;
    if entry.endpoints.is_empty() {
        return Err(at.invalid("endpoints", "at least one endpoint is required"));
    }
    let pool = pool_for(entry, &identity, at, tls_config, settings, pools)?;
    let issuer_keys = issuer_keys(entry, at)?;
    Ok(Route {
        prefix,
        identity,
        issuer_keys,
        endpoints: entry.endpoints.clone(),
        pool,
    })
}

/// The identity the entry's node must present: the prefix's region unless it names
/// another region identity.
fn entry_identity(
    entry: &RegionEntry,
    prefix: RegionPrefix,
    at: &EntryAt<'_>,
) -> Result<PeerIdentity, ConfigError> {
    match &entry.identity {
        None => Ok(PeerIdentity::Region(prefix)),
        Some(uri) => match PeerIdentity::from_uri(uri) {
            Ok(id @ PeerIdentity::Region(_)) => Ok(id),
            Ok(PeerIdentity::Gateway) => Err(at.invalid("identity", "must be a region identity")),
            Err(e) => Err(at.invalid("identity", e)),
        },
    }
}

/// The node's pool: one already built (or kept from the previous registry), else a new
/// one, remembered in `pools`.
fn pool_for(
    entry: &RegionEntry,
    identity: &PeerIdentity,
    at: &EntryAt<'_>,
    tls_config: &Arc<rustls::ClientConfig>,
    settings: &ClientSettings,
    pools: &mut Pools,
) -> Result<Arc<NodePool>, ConfigError> {
    let pool_key = (entry.endpoints.clone(), identity.dns_name());
    if let Some(pool) = pools.get(&pool_key) {
        return Ok(pool.clone());
    }
    let pool =
        NodePool::new(&entry.endpoints, tls_config.clone(), identity, settings).map_err(|e| {
            let name = match &e {
                UpstreamError::BadEndpoint { index, .. } => format!("endpoints[{index}]"),
                _ => "identity".to_owned(),
            };
            at.invalid(&name, e)
        })?;
    let pool = Arc::new(pool);
    pools.insert(pool_key, pool.clone());
    Ok(pool)
}

/// The entry's issuer keys, each valid and no id twice.
fn issuer_keys(entry: &RegionEntry, at: &EntryAt<'_>) -> Result<Vec<IssuerKey>, ConfigError> {
    let base = at.origin.parent().unwrap_or(Path::new("."));
    let mut issuer_keys: Vec<IssuerKey> = Vec::with_capacity(entry.issuer_keys.len());
    for (k, key) in entry.issuer_keys.iter().enumerate() {
        let key = parse_key(key, base).map_err(|e| at.invalid(&format!("issuer_keys[{k}]"), e))?;
        if issuer_keys.iter().any(|other| other.id == key.id) {
            return Err(at.invalid(
                &format!("issuer_keys[{k}].id"),
                format!("key id {:?} is registered twice", key.id),
            ));
        }
        issuer_keys.push(key);
    }
    Ok(issuer_keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tongban_runtime::trust::pki::{self, DevCa};

    fn tls_files() -> TlsFiles {
        tongban_runtime::trust::tls::install_crypto_provider();
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
            crl: Some(dir.join("crl.pem")),
        }
    }

    fn entry(prefix: &str, endpoint: &str) -> RegionEntry {
        RegionEntry {
            prefix: prefix.into(),
            endpoints: vec![endpoint.into()],
            identity: None,
            issuer_keys: Vec::new(),
        }
    }

    fn build(regions: Vec<RegionEntry>) -> Result<Registry, ConfigError> {
        rebuild(regions, None, &tls_files())
    }

    fn rebuild(
        regions: Vec<RegionEntry>,
        previous: Option<&Registry>,
        tls: &TlsFiles,
    ) -> Result<Registry, ConfigError> {
        Registry::build(
            &RegistryFile { regions },
            Path::new("registry.toml"),
            tls,
            &ClientSettings::default(),
            previous,
        )
    }

    /// A reload keeps the pools (connections, endpoint health) of the nodes it already
    /// routes to while the TLS files stay the same, and its members are exactly the
    /// registered identities.
    #[tokio::test]
    async fn a_rebuilt_registry_keeps_known_pools_and_admits_only_members() {
        let tls = tls_files();
        let first = rebuild(
            vec![
                entry("44", "https://127.0.0.1:1"),
                entry("31", "https://127.0.0.1:2"),
            ],
            None,
            &tls,
        )
        .unwrap();
        let second = rebuild(
            vec![
                entry("44", "https://127.0.0.1:1"),
                entry("11", "https://127.0.0.1:3"),
            ],
            Some(&first),
            &tls,
        )
        .unwrap();
        let route = |r: &Registry, c: &str| r.lookup(&RegionCode::parse(c).unwrap()).unwrap();
        assert!(Arc::ptr_eq(
            &route(&first, "440000").pool,
            &route(&second, "440000").pool
        ));
        // A changed TLS file (a new revocation list): new pools, new handshakes.
        let crl = tls.crl.clone().unwrap();
        let mut text = std::fs::read_to_string(&crl).unwrap();
        text.push('\n');
        std::fs::write(&crl, text).unwrap();
        let third = rebuild(
            vec![entry("44", "https://127.0.0.1:1")],
            Some(&second),
            &tls,
        )
        .unwrap();
        assert!(!Arc::ptr_eq(
            &route(&second, "440000").pool,
            &route(&third, "440000").pool
        ));
        let region = |p: &str| PeerIdentity::Region(RegionPrefix::parse(p).unwrap());
        assert!(second.is_member(&region("44")) && second.is_member(&region("11")));
        assert!(
            !second.is_member(&region("31")),
            "removed, no longer admitted"
        );
        assert!(!second.is_member(&PeerIdentity::Gateway));
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
