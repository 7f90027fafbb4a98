//! A local federation on loopback: a dev CA, one gateway and N nodes with embedded
//! platforms, each on ephemeral ports, each loaded from the config files it writes, so
//! what runs here is what an operator would run from those files.
//!
//! The configs name their files relative to the folder they are written in (the config
//! path rule of `tongban_runtime::config`), so a generated folder can be moved, read and
//! run by hand: `tongban-gateway --config var/demo/gateway.toml`.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::task::JoinHandle;
use tongban_gateway::{
    Gateway, GatewayConfig, GatewayListeners,
    registry::{RegionEntry, RegistryFile},
};
use tongban_node::{
    Node, NodeConfig, NodeListeners,
    config::{GatewayLink, ListenConfig, OutboxConfig, PlatformConfig},
    platform::embedded::EmbeddedPlatform,
    portal_client::PortalClient,
    store::Store,
};
use tongban_proto::region::{RegionCode, RegionPrefix};
use tongban_runtime::{
    identity::PeerIdentity,
    pki::{self, DevCa},
    shutdown::Shutdown,
    tls::{ClientSettings, TlsFiles},
};

/// Launcher failures.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{0}")]
    Pki(#[from] pki::PkiError),
    #[error("{0}")]
    Gateway(#[from] tongban_gateway::server::GatewayStartError),
    #[error("{0}")]
    Node(#[from] tongban_node::server::NodeStartError),
    #[error("{0}")]
    Config(#[from] tongban_runtime::config::ConfigError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// What to start.
#[derive(Clone, Debug)]
pub struct FederationSpec {
    /// Folder for certificates, configs and databases.
    pub dir: PathBuf,
    /// One node per region code (e.g. 110000, 310000, 440000).
    pub regions: Vec<RegionCode>,
    /// Synthetic residents seeded into each embedded platform.
    pub seed_residents: u32,
    /// Simulated clerk step of each embedded platform.
    pub review_step: Duration,
    /// Outbox settings of every node.
    pub outbox: OutboxConfig,
    /// Catalog file the gateway serves; `None` serves the built-in national catalog.
    pub catalog: Option<PathBuf>,
}

impl FederationSpec {
    pub fn new(dir: impl Into<PathBuf>, regions: &[&str]) -> Result<Self, LocalError> {
        let regions = regions
            .iter()
            .map(|r| RegionCode::parse(r).map_err(|e| LocalError::Other(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            dir: dir.into(),
            regions,
            seed_residents: 20,
            review_step: Duration::from_millis(300),
            outbox: OutboxConfig {
                poll_interval: Duration::from_millis(200),
                retry_initial: Duration::from_millis(100),
                retry_max: Duration::from_secs(2),
                batch_size: 64,
            },
            catalog: None,
        })
    }
}

/// A running gateway.
pub struct RunningGateway {
    pub federation_addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    pub config_path: PathBuf,
    shutdown: Shutdown,
    handle: JoinHandle<Result<(), tongban_gateway::server::GatewayStartError>>,
}

/// A running node.
pub struct RunningNode {
    pub region: RegionCode,
    pub prefix: RegionPrefix,
    pub federation_addr: SocketAddr,
    pub portal_addr: SocketAddr,
    pub portal: PortalClient,
    pub config_path: PathBuf,
    pub store: Store,
    pub platform: std::sync::Arc<EmbeddedPlatform>,
    shutdown: Shutdown,
    handle: JoinHandle<Result<(), tongban_node::server::NodeStartError>>,
}

/// The whole local federation.
pub struct LocalFederation {
    pub dir: PathBuf,
    pub ca_pem: PathBuf,
    pub gateway: RunningGateway,
    pub nodes: BTreeMap<String, RunningNode>,
    spec: FederationSpec,
    stopped: BTreeMap<String, (PathBuf, SocketAddr, SocketAddr)>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LocalError + '_ {
    move |source| LocalError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn write_toml(path: &Path, value: &impl serde::Serialize, header: &str) -> Result<(), LocalError> {
    let text = toml::to_string_pretty(value).map_err(|e| LocalError::Other(e.to_string()))?;
    std::fs::write(path, format!("{header}\n{text}")).map_err(io_err(path))
}

/// `path` as a config inside `dir` should name it: relative to `dir` when it lies
/// inside, else absolute.
fn file_relative(dir: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix(dir) {
        Ok(inside) => inside.to_owned(),
        Err(_) => std::path::absolute(path).unwrap_or_else(|_| path.to_owned()),
    }
}

/// TLS files as a config inside `dir` names them.
fn tls_files(dir: &Path, ca: &Path, cert: &Path, key: &Path) -> TlsFiles {
    TlsFiles {
        ca: file_relative(dir, ca),
        cert: file_relative(dir, cert),
        key: file_relative(dir, key),
    }
}

async fn bind_loopback() -> Result<tokio::net::TcpListener, LocalError> {
    tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| LocalError::Other(format!("binding 127.0.0.1:0: {e}")))
}

fn local_addr(l: &tokio::net::TcpListener) -> Result<SocketAddr, LocalError> {
    l.local_addr()
        .map_err(|e| LocalError::Other(format!("local address: {e}")))
}

impl LocalFederation {
    /// Generates the PKI and configs under `spec.dir` and starts everything.
    pub async fn start(spec: FederationSpec) -> Result<Self, LocalError> {
        let dir = spec.dir.clone();
        let pki_dir = dir.join("pki");
        std::fs::create_dir_all(&pki_dir).map_err(io_err(&pki_dir))?;
        let ca = DevCa::generate("Tongban development federation CA")?;
        ca.write(&pki_dir)?;
        let ca_pem = pki_dir.join("ca.pem");
        let validity = Duration::from_secs(30 * 24 * 3600);

        let gw_leaf = ca.issue(&PeerIdentity::Gateway, validity)?;
        let (gw_cert, gw_key) = pki::write_leaf(&pki_dir, &PeerIdentity::Gateway, &gw_leaf)?;
        let gw_listeners = GatewayListeners {
            federation: bind_loopback().await?,
            admin: Some(bind_loopback().await?),
        };
        let gw_addr = local_addr(&gw_listeners.federation)?;
        let gw_admin = gw_listeners.admin.as_ref().map(local_addr).transpose()?;

        let mut registry = RegistryFile::default();
        let mut node_parts = Vec::new();
        for region in &spec.regions {
            let prefix = RegionPrefix::parse(region.significant_prefix())
                .map_err(|e| LocalError::Other(e.to_string()))?;
            let identity = PeerIdentity::Region(prefix);
            let leaf = ca.issue(&identity, validity)?;
            let (cert, key) = pki::write_leaf(&pki_dir, &identity, &leaf)?;
            let listeners = NodeListeners {
                federation: bind_loopback().await?,
                portal: bind_loopback().await?,
            };
            let fed_addr = local_addr(&listeners.federation)?;
            registry.regions.push(RegionEntry {
                prefix: prefix.to_string(),
                endpoints: vec![format!("https://{fed_addr}")],
                identity: None,
            });
            node_parts.push((*region, prefix, cert, key, listeners));
        }

        let registry_path = dir.join("registry.toml");
        write_toml(
            &registry_path,
            &registry,
            "# Node registry: region prefix -> node endpoints (written by `tongban demo`).",
        )?;
        let gateway_config = GatewayConfig {
            listen: gw_addr,
            admin_listen: gw_admin,
            tls: tls_files(&dir, &ca_pem, &gw_cert, &gw_key),
            registry: file_relative(&dir, &registry_path),
            catalog: spec.catalog.as_deref().map(|c| file_relative(&dir, c)),
            upstream: ClientSettings::default(),
            handshake_timeout: Duration::from_secs(5),
            worker_threads: 1,
        };
        let gateway_config_path = dir.join("gateway.toml");
        write_toml(
            &gateway_config_path,
            &gateway_config,
            "# Gateway config (written by `tongban demo`).",
        )?;
        let gateway = Gateway::new(GatewayConfig::load(&gateway_config_path)?)?;
        let gw_shutdown = Shutdown::new();
        let gw_signal = gw_shutdown.signal();
        let gateway = RunningGateway {
            federation_addr: gw_addr,
            admin_addr: gw_admin,
            config_path: gateway_config_path,
            handle: tokio::spawn(async move { gateway.serve(gw_listeners, gw_signal).await }),
            shutdown: gw_shutdown,
        };

        let mut nodes = BTreeMap::new();
        for (region, prefix, cert, key, listeners) in node_parts {
            let config = NodeConfig {
                region,
                listen: ListenConfig {
                    federation: local_addr(&listeners.federation)?,
                    portal: local_addr(&listeners.portal)?,
                },
                tls: tls_files(&dir, &ca_pem, &cert, &key),
                gateway: GatewayLink {
                    endpoint: format!("https://{gw_addr}"),
                    server_name: None,
                    client: ClientSettings::default(),
                },
                store: PathBuf::from(format!("node-{prefix}.db")),
                platform: PlatformConfig::Embedded {
                    database: PathBuf::from(format!("platform-{prefix}.db")),
                    seed_residents: spec.seed_residents,
                    review_step: spec.review_step,
                },
                outbox: spec.outbox.clone(),
                handshake_timeout: Duration::from_secs(5),
            };
            let path = dir.join(format!("node-{prefix}.toml"));
            write_toml(
                &path,
                &config,
                &format!("# Node {region} config (written by `tongban demo`)."),
            )?;
            let node = Self::launch(&path, listeners).await?;
            nodes.insert(prefix.to_string(), node);
        }
        Ok(Self {
            dir,
            ca_pem,
            gateway,
            nodes,
            spec,
            stopped: BTreeMap::new(),
        })
    }

    async fn launch(
        config_path: &Path,
        listeners: NodeListeners,
    ) -> Result<RunningNode, LocalError> {
        let config = NodeConfig::load(config_path)?;
        let prefix = config.prefix()?;
        let federation_addr = local_addr(&listeners.federation)?;
        let portal_addr = local_addr(&listeners.portal)?;
        let node = Node::new(config.clone()).await?;
        let store = node.store().clone();
        let platform = node.platform();
        let shutdown = Shutdown::new();
        let signal = shutdown.signal();
        Ok(RunningNode {
            region: config.region,
            prefix,
            federation_addr,
            portal_addr,
            portal: PortalClient::new(format!("http://{portal_addr}")),
            config_path: config_path.to_owned(),
            store,
            platform,
            handle: tokio::spawn(async move { node.serve(listeners, signal).await }),
            shutdown,
        })
    }

    /// The node serving `prefix` ("44").
    pub fn node(&self, prefix: &str) -> Result<&RunningNode, LocalError> {
        self.nodes
            .get(prefix)
            .ok_or_else(|| LocalError::Other(format!("no node for prefix {prefix}")))
    }

    /// Stops a node gracefully (fault tests), keeping its files.
    pub async fn stop_node(&mut self, prefix: &str) -> Result<(), LocalError> {
        let node = self
            .nodes
            .remove(prefix)
            .ok_or_else(|| LocalError::Other(format!("no node for prefix {prefix}")))?;
        node.shutdown.trigger();
        let _ = node.handle.await;
        // Remember where it lived so it can come back on the same ports.
        self.stopped.insert(
            prefix.to_owned(),
            (node.config_path, node.federation_addr, node.portal_addr),
        );
        Ok(())
    }

    /// Restarts a stopped node on its old ports from its config file.
    pub async fn restart_node(&mut self, prefix: &str) -> Result<(), LocalError> {
        let (path, fed, portal) = self
            .stopped
            .remove(prefix)
            .ok_or_else(|| LocalError::Other(format!("node {prefix} is not stopped")))?;
        let listeners = NodeListeners {
            federation: tokio::net::TcpListener::bind(fed)
                .await
                .map_err(|e| LocalError::Other(format!("rebinding {fed}: {e}")))?,
            portal: tokio::net::TcpListener::bind(portal)
                .await
                .map_err(|e| LocalError::Other(format!("rebinding {portal}: {e}")))?,
        };
        let node = Self::launch(&path, listeners).await?;
        self.nodes.insert(prefix.to_owned(), node);
        Ok(())
    }

    /// The spec this federation was started from.
    pub fn spec(&self) -> &FederationSpec {
        &self.spec
    }

    /// Shuts everything down gracefully and waits for it.
    pub async fn shutdown(self) {
        for node in self.nodes.values() {
            node.shutdown.trigger();
        }
        for (_, node) in self.nodes {
            let _ = node.handle.await;
        }
        self.gateway.shutdown.trigger();
        let _ = self.gateway.handle.await;
    }
}
