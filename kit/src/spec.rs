//! What federation to start ([`FederationSpec`]: regions, gateway replicas, how members
//! run, fault proxies, the members' settings) and the names a test uses for its parts
//! ([`Member`], [`Link`]).

use std::{path::PathBuf, time::Duration};

use tongban_gateway::config::{Limits, RecognitionSettings};
use tongban_node::config::{ListenerLimits, OutboxConfig};
use tongban_proto::rules::region::RegionCode;
use tongban_runtime::observability::traces::TelemetryConfig;

use crate::error::KitError;

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
    /// The demo clerk of each embedded platform: approves every case, one step after
    /// another this long apart (`None`: cases wait for a clerk's decision).
    pub auto_approve_after: Option<Duration>,
    /// Outbox settings of every node.
    pub outbox: OutboxConfig,
    /// Timeouts and connection caps of every node's portal and admin listener.
    pub node_listener_limits: ListenerLimits,
    /// Catalog file the gateways serve; `None` serves the built-in national catalog.
    pub catalog: Option<PathBuf>,
    /// The gateways' recognition caches (the hash secret is set by the launcher).
    pub recognition: RecognitionSettings,
    /// Every node's pre-review lookups (its timeout, the verification deadline).
    pub node_recognition: tongban_node::config::RecognitionConfig,
    /// Every node's official calendar (its folder of further years and overlays).
    pub node_calendar: tongban_node::calendar::CalendarConfig,
    /// Give every node a second issuer key that starts signing this long after start
    /// (registered beside the first, windows overlapping): a key rollover under way.
    pub rollover_after: Option<Duration>,
    /// Traces and metrics settings of every member (off by default).
    pub telemetry: TelemetryConfig,
    /// The gateways' admission limits.
    pub limits: Limits,
    /// Regions (by prefix, "44") whose node stands in front of a province platform over
    /// the HTTP contract (the reference platform, with the province's own PKI, mutual TLS
    /// and HMAC signatures) instead of an embedded one.
    pub http_platforms: Vec<String>,
    /// Run those platforms as processes of this `tongban` binary (`tongban platform
    /// serve`, so a kill is a real SIGKILL); `None` runs them in this process, where
    /// their contract can be made to fail (`platform::Faults`).
    pub platform_binary: Option<PathBuf>,
    /// Regions (by prefix) whose node keeps its store in the federation's PostgreSQL
    /// (a throwaway cluster the kit starts, database `node_<prefix>`), so replicas of
    /// it can be added ([`crate::LocalFederation::add_node_replica`]).
    pub postgres_stores: Vec<String>,
    /// How long a node replica's claim on an outbox entry lasts (PostgreSQL stores).
    pub store_lease: Duration,
    /// The gateway replicas follow a shared revocation log in the federation's
    /// PostgreSQL (database `revocation_log`); otherwise each replica learns only the
    /// revocations published to it.
    pub shared_revocation_log: bool,
    /// Nodes reach the gateway replicas through one address, a TCP proxy handing each
    /// connection to the next replica (as a load balancer does), instead of each
    /// replica's own.
    pub gateways_behind_one_address: bool,
}

impl FederationSpec {
    /// Whether the federation needs its own PostgreSQL.
    pub fn needs_postgres(&self) -> bool {
        self.shared_revocation_log || !self.postgres_stores.is_empty()
    }

    pub fn new(dir: impl Into<PathBuf>, regions: &[&str]) -> Result<Self, KitError> {
        let regions = regions
            .iter()
            .map(|r| RegionCode::parse(r).map_err(|e| KitError::Other(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            dir: dir.into(),
            regions,
            gateways: 1,
            launch: Launch::InProcess,
            fault_proxies: false,
            seed_residents: 20,
            auto_approve_after: Some(Duration::from_millis(300)),
            outbox: OutboxConfig {
                poll_interval: Duration::from_millis(200),
                retry_initial: Duration::from_millis(100),
                retry_max: Duration::from_secs(2),
                ..OutboxConfig::default()
            },
            node_listener_limits: ListenerLimits::default(),
            catalog: None,
            recognition: RecognitionSettings::default(),
            node_recognition: Default::default(),
            node_calendar: Default::default(),
            rollover_after: None,
            telemetry: TelemetryConfig::default(),
            limits: Limits::default(),
            http_platforms: Vec::new(),
            platform_binary: None,
            postgres_stores: Vec::new(),
            store_lease: Duration::from_secs(10),
            shared_revocation_log: false,
            gateways_behind_one_address: false,
        })
    }
}

/// A member of the federation, for `LocalFederation::stop`, `kill` and `restart`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Member {
    /// Gateway replica by index.
    Gateway(usize),
    /// Node by region prefix ("44").
    Node(String),
    /// A further replica of the node of a prefix (its store on PostgreSQL), by index
    /// from 1 (the node itself is replica 0).
    Replica(String, usize),
}

/// A link of the federation, for `LocalFederation::link`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Link {
    /// Node (by prefix) calling a gateway replica.
    NodeToGateway { node: String, gateway: usize },
    /// A gateway replica calling a node (by prefix).
    GatewayToNode { gateway: usize, node: String },
}
