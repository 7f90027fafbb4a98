//! A local federation on loopback: a dev CA, M gateway replicas and N nodes with embedded
//! platforms, each on its own ports, each loaded from the config files written here, so
//! what runs is what an operator would run from those files. Members run in this
//! process or as real child processes (the project's own binaries), and can be stopped,
//! killed and restarted one by one; with fault proxies, every link (node → gateway,
//! gateway → node) passes through a [`FaultProxy`] a test can delay, cut or blackhole.
//!
//! The configs name their files relative to the folder they are written in (the config
//! path rule of `tongban_runtime::config`), so a generated folder can be moved, read and
//! run by hand: `tongban-gateway --config var/demo/gateway.toml`.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{net::TcpListener, task::JoinHandle};
use tongban_gateway::{
    Gateway, GatewayConfig, GatewayListeners,
    config::{AuditSettings, ConsoleSettings, Limits, RecognitionSettings},
    registry::{IssuerKeyEntry, RegionEntry, RegistryFile},
};
use tongban_node::{
    Node, NodeConfig, NodeListeners,
    config::{
        GatewayLink, IssuerConfig, ListenConfig, OutboxConfig, PlatformConfig, SigningKeyConfig,
    },
    platform::embedded::EmbeddedPlatform,
    portal_client::PortalClient,
    store::Store,
};
use tongban_proto::region::{RegionCode, RegionPrefix};
use tongban_runtime::{
    identity::PeerIdentity,
    pki::{self, DevCa, IssuerKey},
    shutdown::Shutdown,
    tls::{ClientSettings, TlsFiles},
    traces::TelemetryConfig,
};

use crate::fault::FaultProxy;

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
    #[error("{0}")]
    Store(#[from] tongban_node::store::StoreError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// How members run.
#[derive(Clone, Debug)]
pub enum Launch {
    /// As tasks of this process (fast; a kill drops the member's tasks mid-way).
    InProcess,
    /// As child processes of the project's binaries `tongban-gateway` and `tongban-node`
    /// found in `bin_dir` (a kill is a real SIGKILL).
    Processes { bin_dir: PathBuf, log: String },
}

/// What to start.
#[derive(Clone, Debug)]
pub struct FederationSpec {
    /// Folder for certificates, configs and databases.
    pub dir: PathBuf,
    /// One node per region code (e.g. 110000, 310000, 440000).
    pub regions: Vec<RegionCode>,
    /// Gateway replicas; every node is given all of them.
    pub gateways: usize,
    pub launch: Launch,
    /// Put a fault proxy on every link, node → gateway and gateway → node.
    pub fault_proxies: bool,
    /// Synthetic residents seeded into each embedded platform.
    pub seed_residents: u32,
    /// Simulated clerk step of each embedded platform.
    pub review_step: Duration,
    /// Outbox settings of every node.
    pub outbox: OutboxConfig,
    /// Catalog file the gateways serve; `None` serves the built-in national catalog.
    pub catalog: Option<PathBuf>,
    /// The gateways' recognition caches (the hash secret is set by the launcher).
    pub recognition: RecognitionSettings,
    /// Give every node a second issuer key that starts signing this long after start
    /// (registered beside the first, windows overlapping): a key rollover under way.
    pub rollover_after: Option<Duration>,
    /// Traces and metrics settings of every member (off by default).
    pub telemetry: TelemetryConfig,
    /// The gateways' admission limits.
    pub limits: Limits,
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
            gateways: 1,
            launch: Launch::InProcess,
            fault_proxies: false,
            seed_residents: 20,
            review_step: Duration::from_millis(300),
            outbox: OutboxConfig {
                poll_interval: Duration::from_millis(200),
                retry_initial: Duration::from_millis(100),
                retry_max: Duration::from_secs(2),
                ..OutboxConfig::default()
            },
            catalog: None,
            recognition: RecognitionSettings::default(),
            rollover_after: None,
            telemetry: TelemetryConfig::default(),
            limits: Limits::default(),
        })
    }
}

/// A member of the federation, for [`LocalFederation::stop`], `kill` and `restart`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Member {
    /// Gateway replica by index.
    Gateway(usize),
    /// Node by region prefix ("44").
    Node(String),
}

/// A link of the federation, for [`LocalFederation::link`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Link {
    /// Node (by prefix) calling a gateway replica.
    NodeToGateway { node: String, gateway: usize },
    /// A gateway replica calling a node (by prefix).
    GatewayToNode { gateway: usize, node: String },
}

/// How a member is running.
enum Run {
    Task {
        shutdown: Shutdown,
        handle: JoinHandle<Result<(), String>>,
    },
    Process(Child),
    Stopped,
}

impl Run {
    // The methods work through `&mut` and leave `Stopped` behind: `Run` has a `Drop`, so
    // its variants cannot be moved out.
    async fn stop(&mut self) {
        match self {
            Run::Task { shutdown, handle } => {
                shutdown.trigger();
                let _ = handle.await;
            }
            Run::Process(child) => {
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                let deadline = Instant::now() + Duration::from_secs(15);
                let mut exited = false;
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        exited = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                if !exited {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            Run::Stopped => {}
        }
        *self = Run::Stopped;
    }

    async fn kill(&mut self) {
        match self {
            Run::Task { handle, .. } => {
                handle.abort();
                let _ = handle.await;
            }
            Run::Process(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Run::Stopped => {}
        }
        *self = Run::Stopped;
    }
}

impl Drop for Run {
    /// A federation dropped without `shutdown` (a failed test) leaves nothing running.
    fn drop(&mut self) {
        match self {
            Run::Task { handle, .. } => handle.abort(),
            Run::Process(child) => {
                // Already reaped by `stop`/`kill` when those ran: then both are no-ops.
                if let Ok(None) = child.try_wait() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            Run::Stopped => {}
        }
    }
}

/// A gateway replica.
pub struct RunningGateway {
    pub index: usize,
    pub federation_addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    pub config_path: PathBuf,
    run: Run,
}

/// A node.
pub struct RunningNode {
    pub region: RegionCode,
    pub prefix: RegionPrefix,
    pub federation_addr: SocketAddr,
    pub portal_addr: SocketAddr,
    pub portal: PortalClient,
    /// The node's admin listener (probes, license revocation).
    pub admin_addr: SocketAddr,
    pub admin: PortalClient,
    pub config_path: PathBuf,
    /// The node's store and platform, opened on the member's own database files (shared
    /// with a child process through SQLite's locking).
    pub store: Store,
    pub platform: Arc<EmbeddedPlatform>,
    run: Run,
}

/// The whole local federation.
pub struct LocalFederation {
    pub dir: PathBuf,
    pub ca_pem: PathBuf,
    pub gateways: Vec<RunningGateway>,
    pub nodes: BTreeMap<String, RunningNode>,
    links: BTreeMap<Link, FaultProxy>,
    spec: FederationSpec,
    /// Extra environment of node processes by prefix, from their next start.
    node_env: BTreeMap<String, Vec<(String, String)>>,
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

/// Writes 32 random bytes (mode 0600): the gateways' secret for keyed hashes.
fn write_secret(path: &Path) -> Result<(), LocalError> {
    let mut secret = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
        .map_err(|_| LocalError::Other("the system random generator failed".into()))?;
    std::fs::write(path, secret).map_err(io_err(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io_err(path))?;
    }
    Ok(())
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
fn tls_files(dir: &Path, ca: &Path, (cert, key): &(PathBuf, PathBuf)) -> TlsFiles {
    TlsFiles {
        ca: file_relative(dir, ca),
        cert: file_relative(dir, cert),
        key: file_relative(dir, key),
        // Beside the CA (`DevCa::write` puts an empty list there).
        crl: Some(file_relative(dir, &ca.with_file_name("crl.pem"))),
    }
}

async fn bind_loopback() -> Result<TcpListener, LocalError> {
    TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| LocalError::Other(format!("binding 127.0.0.1:0: {e}")))
}

async fn rebind(addr: SocketAddr) -> Result<TcpListener, LocalError> {
    // A restarted member comes back on its old port; the old socket may linger briefly.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) if Instant::now() > deadline => {
                return Err(LocalError::Other(format!("rebinding {addr}: {e}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn local_addr(l: &TcpListener) -> Result<SocketAddr, LocalError> {
    l.local_addr()
        .map_err(|e| LocalError::Other(format!("local address: {e}")))
}

/// A member's listeners, bound before its config is written so its ports are its own.
struct GatewaySockets {
    federation: TcpListener,
    admin: TcpListener,
}

struct NodeSockets {
    region: RegionCode,
    prefix: RegionPrefix,
    federation: TcpListener,
    portal: TcpListener,
    admin: TcpListener,
}

impl LocalFederation {
    /// Generates the PKI and configs under `spec.dir` and starts every member.
    pub async fn start(spec: FederationSpec) -> Result<Self, LocalError> {
        if spec.gateways == 0 {
            return Err(LocalError::Other("a federation needs a gateway".into()));
        }
        let dir = spec.dir.clone();
        let pki_dir = dir.join("pki");
        std::fs::create_dir_all(&pki_dir).map_err(io_err(&pki_dir))?;
        let ca = DevCa::generate("Tongban development federation CA")?;
        ca.write(&pki_dir)?;
        let ca_pem = pki_dir.join("ca.pem");
        let validity = Duration::from_secs(30 * 24 * 3600);
        let issue = |identity: &PeerIdentity| -> Result<(PathBuf, PathBuf), LocalError> {
            let leaf = ca.issue(identity, validity)?;
            Ok(pki::write_leaf(&pki_dir, identity, &leaf)?)
        };

        let gateway_files = issue(&PeerIdentity::Gateway)?;
        let mut gateway_sockets = Vec::new();
        for _ in 0..spec.gateways {
            gateway_sockets.push(GatewaySockets {
                federation: bind_loopback().await?,
                admin: bind_loopback().await?,
            });
        }
        let mut node_sockets = Vec::new();
        for region in &spec.regions {
            let prefix = RegionPrefix::parse(region.significant_prefix())
                .map_err(|e| LocalError::Other(e.to_string()))?;
            node_sockets.push(NodeSockets {
                region: *region,
                prefix,
                federation: bind_loopback().await?,
                portal: bind_loopback().await?,
                admin: bind_loopback().await?,
            });
        }

        // Each node's issuer key (Ed25519, apart from its TLS key), registered for its
        // region with a window around now; and the gateways' shared hash secret.
        let now = std::time::SystemTime::now();
        let mut issuer_keys: BTreeMap<
            String,
            Vec<(IssuerKey, PathBuf, Option<std::time::SystemTime>)>,
        > = BTreeMap::new();
        for node in &node_sockets {
            let mut keys = Vec::new();
            let first = IssuerKey::generate(&format!("{}-k1", node.prefix))?;
            let path = first.write(&pki_dir)?;
            keys.push((first, path, None));
            if let Some(after) = spec.rollover_after {
                let next = IssuerKey::generate(&format!("{}-k2", node.prefix))?;
                let path = next.write(&pki_dir)?;
                keys.push((next, path, Some(now + after)));
            }
            issuer_keys.insert(node.prefix.to_string(), keys);
        }
        let hash_key_path = pki_dir.join("gateway-hash.key");
        write_secret(&hash_key_path)?;

        // Every link, through a fault proxy if asked for.
        let mut links = BTreeMap::new();
        let mut link_addr = BTreeMap::new();
        for (g, gw) in gateway_sockets.iter().enumerate() {
            for node in &node_sockets {
                let node_name = node.prefix.to_string();
                for (link, upstream) in [
                    (
                        Link::NodeToGateway {
                            node: node_name.clone(),
                            gateway: g,
                        },
                        local_addr(&gw.federation)?,
                    ),
                    (
                        Link::GatewayToNode {
                            gateway: g,
                            node: node_name.clone(),
                        },
                        local_addr(&node.federation)?,
                    ),
                ] {
                    let addr = if spec.fault_proxies {
                        let proxy = FaultProxy::start(bind_loopback().await?, upstream)
                            .map_err(|e| LocalError::Other(format!("fault proxy: {e}")))?;
                        let addr = proxy.addr();
                        links.insert(link.clone(), proxy);
                        addr
                    } else {
                        upstream
                    };
                    link_addr.insert(link, addr);
                }
            }
        }
        let via = |link: Link| -> Result<String, LocalError> {
            link_addr
                .get(&link)
                .map(|a| format!("https://{a}"))
                .ok_or_else(|| LocalError::Other(format!("no address for {link:?}")))
        };

        let mut gateway_configs = Vec::new();
        for (g, sockets) in gateway_sockets.iter().enumerate() {
            let mut registry = RegistryFile::default();
            for node in &node_sockets {
                registry.regions.push(RegionEntry {
                    prefix: node.prefix.to_string(),
                    endpoints: vec![via(Link::GatewayToNode {
                        gateway: g,
                        node: node.prefix.to_string(),
                    })?],
                    identity: None,
                    // Both keys of a rollover are registered from now: their windows
                    // overlap while the node switches from the first to the next.
                    issuer_keys: issuer_keys[&node.prefix.to_string()]
                        .iter()
                        .map(|(key, _, _)| IssuerKeyEntry {
                            id: key.key_id.clone(),
                            ed25519_public_key: Some(key.public_key_hex()),
                            ed25519_public_key_file: None,
                            not_before: now - Duration::from_secs(3600),
                            not_after: now + validity,
                        })
                        .collect(),
                });
            }
            let suffix = if g == 0 {
                String::new()
            } else {
                format!("-{g}")
            };
            let registry_path = dir.join(format!("registry{suffix}.toml"));
            write_toml(
                &registry_path,
                &registry,
                "# Node registry: region prefix -> node endpoints (written by `tongban demo`).",
            )?;
            let config = GatewayConfig {
                listen: local_addr(&sockets.federation)?,
                admin_listen: Some(local_addr(&sockets.admin)?),
                tls: tls_files(&dir, &ca_pem, &gateway_files),
                registry: file_relative(&dir, &registry_path),
                catalog: spec.catalog.as_deref().map(|c| file_relative(&dir, c)),
                upstream: ClientSettings::default(),
                handshake_timeout: Duration::from_secs(5),
                worker_threads: 1,
                recognition: RecognitionSettings {
                    hash_key: Some(file_relative(&dir, &hash_key_path)),
                    ..spec.recognition.clone()
                },
                telemetry: spec.telemetry.clone(),
                limits: spec.limits.clone(),
                audit: AuditSettings {
                    file: file_relative(&dir, &dir.join(format!("gateway{suffix}-audit.log"))),
                    ..AuditSettings::default()
                },
                // The console shows every node's outbox and certificate.
                console: ConsoleSettings {
                    node_metrics: node_sockets
                        .iter()
                        .map(|n| {
                            Ok((
                                n.region.to_string(),
                                format!("http://{}/metrics", local_addr(&n.admin)?),
                            ))
                        })
                        .collect::<Result<_, LocalError>>()?,
                    ..ConsoleSettings::default()
                },
            };
            let path = dir.join(format!("gateway{suffix}.toml"));
            write_toml(
                &path,
                &config,
                "# Gateway config (written by `tongban demo`).",
            )?;
            gateway_configs.push(path);
        }

        let mut node_configs = Vec::new();
        for node in &node_sockets {
            let prefix = node.prefix;
            let files = issue(&PeerIdentity::Region(prefix))?;
            let config = NodeConfig {
                region: node.region,
                listen: ListenConfig {
                    federation: local_addr(&node.federation)?,
                    portal: local_addr(&node.portal)?,
                    admin: Some(local_addr(&node.admin)?),
                },
                tls: tls_files(&dir, &ca_pem, &files),
                gateway: GatewayLink {
                    endpoints: (0..spec.gateways)
                        .map(|g| {
                            via(Link::NodeToGateway {
                                node: prefix.to_string(),
                                gateway: g,
                            })
                        })
                        .collect::<Result<_, _>>()?,
                    server_name: None,
                    client: ClientSettings::default(),
                },
                store: PathBuf::from(format!("node-{prefix}.db")),
                audit: tongban_runtime::audit_chain::TrailSettings::at(&format!(
                    "node-{prefix}-audit.log"
                )),
                platform: PlatformConfig::Embedded {
                    database: PathBuf::from(format!("platform-{prefix}.db")),
                    seed_residents: spec.seed_residents,
                    review_step: spec.review_step,
                },
                outbox: spec.outbox.clone(),
                handshake_timeout: Duration::from_secs(5),
                issuer: IssuerConfig {
                    keys: issuer_keys[&prefix.to_string()]
                        .iter()
                        .map(|(key, path, starts)| SigningKeyConfig {
                            id: key.key_id.clone(),
                            file: file_relative(&dir, path),
                            not_before: *starts,
                        })
                        .collect(),
                    assertion_validity: None,
                },
                recognition: Default::default(),
                telemetry: spec.telemetry.clone(),
            };
            let path = dir.join(format!("node-{prefix}.toml"));
            write_toml(
                &path,
                &config,
                &format!("# Node {} config (written by `tongban demo`).", node.region),
            )?;
            node_configs.push(path);
        }

        let mut federation = Self {
            dir,
            ca_pem,
            gateways: Vec::new(),
            nodes: BTreeMap::new(),
            links,
            spec,
            node_env: BTreeMap::new(),
        };
        for (index, (sockets, path)) in gateway_sockets.into_iter().zip(gateway_configs).enumerate()
        {
            let gateway = federation.launch_gateway(index, &path, sockets).await?;
            federation.gateways.push(gateway);
        }
        for (sockets, path) in node_sockets.into_iter().zip(node_configs) {
            let prefix = sockets.prefix.to_string();
            let node = federation.launch_node(&path, sockets).await?;
            federation.nodes.insert(prefix, node);
        }
        Ok(federation)
    }

    async fn launch_gateway(
        &self,
        index: usize,
        config_path: &Path,
        sockets: GatewaySockets,
    ) -> Result<RunningGateway, LocalError> {
        let federation_addr = local_addr(&sockets.federation)?;
        let admin_addr = local_addr(&sockets.admin)?;
        let run = match &self.spec.launch {
            Launch::InProcess => {
                let gateway = Gateway::new(GatewayConfig::load(config_path)?)?;
                let shutdown = Shutdown::new();
                let signal = shutdown.signal();
                let listeners = GatewayListeners {
                    federation: sockets.federation,
                    admin: Some(sockets.admin),
                };
                Run::Task {
                    shutdown,
                    handle: tokio::spawn(async move {
                        gateway
                            .serve(listeners, signal)
                            .await
                            .map_err(|e| e.to_string())
                    }),
                }
            }
            Launch::Processes { bin_dir, log } => {
                drop(sockets);
                let child = spawn(
                    &bin_dir.join("tongban-gateway"),
                    config_path,
                    log,
                    &[],
                    &self.dir.join(format!("gateway-{index}.log")),
                )?;
                wait_ready(&format!("http://{admin_addr}")).await?;
                Run::Process(child)
            }
        };
        Ok(RunningGateway {
            index,
            federation_addr,
            admin_addr: Some(admin_addr),
            config_path: config_path.to_owned(),
            run,
        })
    }

    async fn launch_node(
        &self,
        config_path: &Path,
        sockets: NodeSockets,
    ) -> Result<RunningNode, LocalError> {
        let config = NodeConfig::load(config_path)?;
        let federation_addr = local_addr(&sockets.federation)?;
        let portal_addr = local_addr(&sockets.portal)?;
        let admin_addr = local_addr(&sockets.admin)?;
        let portal = PortalClient::new(format!("http://{portal_addr}"));
        let (run, store, platform) = match &self.spec.launch {
            Launch::InProcess => {
                let node = Node::new(config.clone()).await?;
                let store = node.store().clone();
                let platform = node.platform();
                let shutdown = Shutdown::new();
                let signal = shutdown.signal();
                let listeners = NodeListeners {
                    federation: sockets.federation,
                    portal: sockets.portal,
                    admin: Some(sockets.admin),
                };
                let run = Run::Task {
                    shutdown,
                    handle: tokio::spawn(async move {
                        node.serve(listeners, signal)
                            .await
                            .map_err(|e| e.to_string())
                    }),
                };
                (run, store, platform)
            }
            Launch::Processes { bin_dir, log } => {
                drop(sockets);
                let prefix = sockets_prefix(&config);
                let env = self.node_env.get(&prefix).map_or(&[][..], Vec::as_slice);
                let child = spawn(
                    &bin_dir.join("tongban-node"),
                    config_path,
                    log,
                    env,
                    &self
                        .dir
                        .join(format!("node-{}.log", sockets_prefix(&config))),
                )?;
                wait_ready(&format!("http://{portal_addr}")).await?;
                let store = Store::open(&config.store)?;
                let PlatformConfig::Embedded { database, .. } = &config.platform;
                let platform = EmbeddedPlatform::open(database, &config.prefix()?)?;
                (Run::Process(child), store, platform)
            }
        };
        Ok(RunningNode {
            region: config.region,
            prefix: config.prefix()?,
            federation_addr,
            portal_addr,
            portal,
            admin_addr,
            admin: PortalClient::new(format!("http://{admin_addr}")),
            config_path: config_path.to_owned(),
            store,
            platform,
            run,
        })
    }

    /// The first gateway replica.
    pub fn gateway(&self) -> &RunningGateway {
        &self.gateways[0]
    }

    /// The node serving `prefix` ("44").
    pub fn node(&self, prefix: &str) -> Result<&RunningNode, LocalError> {
        self.nodes
            .get(prefix)
            .ok_or_else(|| LocalError::Other(format!("no node for prefix {prefix}")))
    }

    /// The fault proxy on `link` (started with `fault_proxies`).
    pub fn link(&self, link: &Link) -> Result<&FaultProxy, LocalError> {
        self.links
            .get(link)
            .ok_or_else(|| LocalError::Other(format!("no fault proxy on {link:?}")))
    }

    fn run_of(&mut self, member: &Member) -> Result<&mut Run, LocalError> {
        match member {
            Member::Gateway(i) => self.gateways.get_mut(*i).map(|g| &mut g.run),
            Member::Node(p) => self.nodes.get_mut(p).map(|n| &mut n.run),
        }
        .ok_or_else(|| LocalError::Other(format!("no member {member:?}")))
    }

    /// The process id of a member run as a process (to send it signals), if it runs.
    pub fn pid(&mut self, member: &Member) -> Option<u32> {
        match self.run_of(member).ok()? {
            Run::Process(child) => Some(child.id()),
            _ => None,
        }
    }

    /// Stops a member gracefully (SIGTERM for a process), keeping its files and ports.
    pub async fn stop(&mut self, member: &Member) -> Result<(), LocalError> {
        self.run_of(member)?.stop().await;
        Ok(())
    }

    /// Kills a member at once: SIGKILL for a process, its tasks dropped mid-way
    /// in-process.
    pub async fn kill(&mut self, member: &Member) -> Result<(), LocalError> {
        self.run_of(member)?.kill().await;
        Ok(())
    }

    /// Sets extra environment for the node process of `prefix` from its next start
    /// (e.g. `TONGBAN_CRASH_AT`, see `tongban_node::crash_point`); empty clears it.
    /// Members run in-process ignore it.
    pub fn set_node_env(&mut self, prefix: &str, env: Vec<(String, String)>) {
        self.node_env.insert(prefix.to_owned(), env);
    }

    /// Waits up to `limit` for a member process to exit by itself (a crash); returns
    /// whether it did, leaving it stopped (restartable) if so.
    pub async fn wait_exit(
        &mut self,
        member: &Member,
        limit: Duration,
    ) -> Result<bool, LocalError> {
        let deadline = Instant::now() + limit;
        let run = self.run_of(member)?;
        loop {
            let exited = match run {
                Run::Process(child) => child.try_wait().is_ok_and(|s| s.is_some()),
                Run::Stopped => true,
                Run::Task { handle, .. } => handle.is_finished(),
            };
            if exited {
                run.kill().await;
                return Ok(true);
            }
            if Instant::now() > deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts a stopped or killed member again from its config file, on its old ports.
    pub async fn restart(&mut self, member: &Member) -> Result<(), LocalError> {
        if !matches!(self.run_of(member)?, Run::Stopped) {
            return Err(LocalError::Other(format!("{member:?} is still running")));
        }
        match member {
            Member::Gateway(i) => {
                let old = &self.gateways[*i];
                let sockets = GatewaySockets {
                    federation: rebind(old.federation_addr).await?,
                    admin: rebind(old.admin_addr.unwrap_or(old.federation_addr)).await?,
                };
                let path = old.config_path.clone();
                let gateway = self.launch_gateway(*i, &path, sockets).await?;
                self.gateways[*i] = gateway;
            }
            Member::Node(prefix) => {
                let old = self.node(prefix)?;
                let sockets = NodeSockets {
                    region: old.region,
                    prefix: old.prefix,
                    federation: rebind(old.federation_addr).await?,
                    portal: rebind(old.portal_addr).await?,
                    admin: rebind(old.admin_addr).await?,
                };
                let path = old.config_path.clone();
                let node = self.launch_node(&path, sockets).await?;
                self.nodes.insert(prefix.clone(), node);
            }
        }
        Ok(())
    }

    /// Stops a node gracefully (fault tests), keeping its files.
    pub async fn stop_node(&mut self, prefix: &str) -> Result<(), LocalError> {
        self.stop(&Member::Node(prefix.to_owned())).await
    }

    /// Restarts a stopped node on its old ports from its config file.
    pub async fn restart_node(&mut self, prefix: &str) -> Result<(), LocalError> {
        self.restart(&Member::Node(prefix.to_owned())).await
    }

    /// The spec this federation was started from.
    pub fn spec(&self) -> &FederationSpec {
        &self.spec
    }

    /// Shuts everything down gracefully and waits for it: nodes first, then gateways.
    pub async fn shutdown(mut self) {
        for node in self.nodes.values_mut() {
            node.run.stop().await;
        }
        for gateway in &mut self.gateways {
            gateway.run.stop().await;
        }
    }
}

fn sockets_prefix(config: &NodeConfig) -> String {
    config.region.significant_prefix().to_owned()
}

/// Starts a member binary on `config`, its output appended to `log`.
fn spawn(
    binary: &Path,
    config: &Path,
    filter: &str,
    env: &[(String, String)],
    log: &Path,
) -> Result<Child, LocalError> {
    if !binary.exists() {
        return Err(LocalError::Other(format!(
            "{} is missing: build it first (cargo build -p tongban-gateway -p tongban-node)",
            binary.display()
        )));
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io_err(log))?;
    let err = out.try_clone().map_err(io_err(log))?;
    Command::new(binary)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", filter)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(io_err(binary))
}

/// Waits until `base` answers 200 on `/readyz` (a member's readiness probe).
async fn wait_ready(base: &str) -> Result<(), LocalError> {
    let probe = PortalClient::new(base);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if probe.get("/readyz").await.is_ok_and(|r| r.status == 200) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(LocalError::Other(format!(
                "{base}/readyz not ready within 30 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
