//! The members' config files, written from the spec, the bound listeners, the PKI, the
//! keys and the links: `gateway[-N].toml` with `registry[-N].toml` per gateway replica,
//! `node-<prefix>.toml` per node.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use tongban_gateway::{
    config::{ConsoleSettings, RecognitionSettings, RevocationLogSettings},
    registry::{RegionEntry, RegistryFile},
};
use tongban_node::{
    access_inquiry::AccessLogConfig,
    config::{ListenConfig, PostgresStore, SigningKeyConfig, StoreConfig},
};
use tongban_runtime::{
    audit::trail::TrailSettings, serving::operator_listener::OperatorConfig,
    trust::identity::PeerIdentity,
};

use crate::{
    config::{files::file_relative, gateway, node, pki::Pki, platform::ProvincePlatform},
    error::KitError,
    launch::{
        keys::{Keys, VALIDITY},
        links::Routes,
        sockets::{NodeSockets, Sockets, local_addr},
    },
    postgres::PostgresCluster,
    spec::{FederationSpec, Link},
};

/// How often nodes read their HTTP platform's feeds.
const PLATFORM_POLL: Duration = Duration::from_millis(200);

/// The tool named in the configs' headers.
const WRITER: &str = "tongban demo";

/// What the configs are written from.
pub(crate) struct Plan<'a> {
    pub spec: &'a FederationSpec,
    pub pki: &'a Pki,
    pub sockets: &'a Sockets,
    pub keys: &'a Keys,
    pub routes: &'a Routes,
    /// The province platforms of nodes with an HTTP platform, by prefix.
    pub platforms: &'a BTreeMap<String, ProvincePlatform>,
    /// The federation's PostgreSQL, if it has one.
    pub postgres: Option<&'a PostgresCluster>,
    /// The one address of every gateway replica, if they are behind one.
    pub gateway_front: Option<std::net::SocketAddr>,
}

/// The database of the node store of `prefix` in the federation's PostgreSQL.
pub(crate) fn node_database(prefix: &str) -> String {
    format!("node_{prefix}")
}

/// The database of the gateways' shared revocation log.
pub(crate) const REVOCATION_LOG_DATABASE: &str = "revocation_log";

/// The name of replica `index` of the node of `prefix` (0 is the node itself).
pub(crate) fn replica_name(prefix: &str, index: usize) -> String {
    format!("node-{prefix}-{index}")
}

impl Plan<'_> {
    fn dir(&self) -> &Path {
        &self.spec.dir
    }

    /// Writes every gateway replica's registry and config; returns the configs.
    pub fn write_gateways(&self) -> Result<Vec<PathBuf>, KitError> {
        (0..self.sockets.gateways.len())
            .map(|g| self.write_gateway(g))
            .collect()
    }

    /// Writes every node's config (issuing its certificate); returns the configs.
    pub fn write_nodes(&self) -> Result<Vec<PathBuf>, KitError> {
        self.sockets
            .nodes
            .iter()
            .map(|n| self.write_node(n))
            .collect()
    }

    /// Replica `g`'s registry: every node through its link from `g`, with its issuer
    /// keys.
    fn write_registry(&self, g: usize, suffix: &str) -> Result<PathBuf, KitError> {
        let mut registry = RegistryFile::default();
        for node in &self.sockets.nodes {
            let prefix = node.prefix.to_string();
            registry.regions.push(RegionEntry {
                prefix: prefix.clone(),
                endpoints: vec![self.routes.url(Link::GatewayToNode {
                    gateway: g,
                    node: prefix.clone(),
                })?],
                identity: None,
                // Both keys of a rollover are registered from now: their windows
                // overlap while the node switches from the first to the next.
                issuer_keys: self
                    .keys
                    .of(&prefix)?
                    .iter()
                    .map(|k| gateway::issuer_key_entry(&k.key, self.keys.now, VALIDITY))
                    .collect(),
            });
        }
        let path = self.dir().join(format!("registry{suffix}.toml"));
        gateway::write_registry(&path, &registry, WRITER)?;
        Ok(path)
    }

    fn write_gateway(&self, g: usize) -> Result<PathBuf, KitError> {
        let (dir, spec) = (self.dir(), self.spec);
        let sockets = &self.sockets.gateways[g];
        let suffix = if g == 0 {
            String::new()
        } else {
            format!("-{g}")
        };
        let registry = self.write_registry(g, &suffix)?;
        let mut config = gateway::config(
            local_addr(&sockets.federation)?,
            Some(local_addr(&sockets.admin)?),
            self.pki.member_tls(dir, &PeerIdentity::Gateway),
            file_relative(dir, &registry),
        );
        config.catalog = spec.catalog.as_deref().map(|c| file_relative(dir, c));
        config.recognition = RecognitionSettings {
            hash_key: Some(file_relative(dir, &self.keys.hash_key)),
            ..spec.recognition.clone()
        };
        config.telemetry = spec.telemetry.clone();
        config.limits = spec.limits.clone();
        config.audit = TrailSettings::at(&format!("gateway{suffix}-audit.log"));
        // Replicas sharing a revocation log share the catalog ledger in its database;
        // without one, each keeps its own file.
        if !spec.shared_revocation_log {
            config.catalog_ledger = Some(PathBuf::from(format!(
                "gateway{suffix}-catalog-ledger.jsonl"
            )));
        }
        config.operators = Some(OperatorConfig {
            listen: local_addr(&sockets.operator)?,
            roster: crate::config::pki::roster(),
        });
        if spec.shared_revocation_log {
            let cluster = self.postgres.ok_or_else(|| {
                KitError::Other(
                    "a shared revocation log without the federation's PostgreSQL".into(),
                )
            })?;
            let mut log = RevocationLogSettings::new(cluster.url(REVOCATION_LOG_DATABASE));
            log.replica = Some(format!("gateway-{g}"));
            config.revocation_log = Some(log);
        }
        // The console shows every node's outbox and certificate.
        config.console = ConsoleSettings {
            node_metrics: self
                .sockets
                .nodes
                .iter()
                .map(|n| {
                    Ok((
                        n.region.to_string(),
                        format!("http://{}/metrics", local_addr(&n.admin)?),
                    ))
                })
                .collect::<Result<_, KitError>>()?,
            ..ConsoleSettings::default()
        };
        let path = dir.join(format!("gateway{suffix}.toml"));
        gateway::write(&path, &config, WRITER)?;
        Ok(path)
    }

    fn write_node(&self, sockets: &NodeSockets) -> Result<PathBuf, KitError> {
        let (dir, spec) = (self.dir(), self.spec);
        let prefix = sockets.prefix.to_string();
        let identity = PeerIdentity::Region(sockets.prefix);
        self.pki.issue(&identity, VALIDITY)?;
        let listen = ListenConfig {
            federation: local_addr(&sockets.federation)?,
            portal: local_addr(&sockets.portal)?,
            admin: Some(local_addr(&sockets.admin)?),
        };
        let gateways = match self.gateway_front {
            Some(front) => vec![format!("https://{front}")],
            None => (0..spec.gateways)
                .map(|g| {
                    self.routes.url(Link::NodeToGateway {
                        node: prefix.clone(),
                        gateway: g,
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let suffix = format!("-{prefix}");
        let platform = match self.platforms.get(&prefix) {
            Some(province) => province.node_platform(dir, PLATFORM_POLL),
            None => node::embedded_platform(&suffix, spec.seed_residents, spec.auto_approve_after),
        };
        let tls = self.pki.member_tls(dir, &identity);
        let mut config = node::config(sockets.region, listen, tls, gateways, &suffix, platform);
        config.outbox = spec.outbox.clone();
        config.listener_limits = spec.node_listener_limits.clone();
        config.recognition = spec.node_recognition.clone();
        config.calendar = spec.node_calendar.clone();
        config.issuer.keys = self
            .keys
            .of(&prefix)?
            .iter()
            .map(|k| SigningKeyConfig {
                id: k.key.key_id.clone(),
                file: file_relative(dir, &k.file),
                not_before: k.starts,
            })
            .collect();
        config.telemetry = spec.telemetry.clone();
        config.operators = Some(OperatorConfig {
            listen: local_addr(&sockets.operator)?,
            roster: crate::config::pki::roster(),
        });
        // The province's portal proves to the node that it authenticated a citizen who
        // reads their access log; the kit plays that portal (`RunningNode::access_log`).
        let secret = self.pki.hash_secret(&format!("portal-{prefix}.key"))?;
        config.access_log = Some(AccessLogConfig {
            portal_secret: file_relative(dir, &secret),
            per_person_per_minute: 5,
        });
        if spec.postgres_stores.contains(&prefix) {
            let cluster = self.postgres.ok_or_else(|| {
                KitError::Other("PostgreSQL stores without the federation's PostgreSQL".into())
            })?;
            config.store = StoreConfig::Postgres(PostgresStore {
                url: cluster.url(&node_database(&prefix)),
                password_file: None,
                tls: Default::default(),
                pool: Default::default(),
                replica: Some(replica_name(&prefix, 0)),
                lease: spec.store_lease,
            });
        }
        let path = dir.join(format!("node-{prefix}.toml"));
        node::write(&path, &config, WRITER)?;
        Ok(path)
    }
}
