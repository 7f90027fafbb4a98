//! The node's config file (TOML). Every field is documented; unknown keys are
//! rejected; relative paths are relative to the config file's folder (the rule is
//! `tongban_runtime::process::config`'s, shared with the gateway).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tongban_proto::rules::region::{RegionCode, RegionPrefix};
use tongban_runtime::serving::handshakes::HandshakeLimits;
mod store;

pub use store::{PostgresStore, StoreConfig};

use tongban_runtime::{
    process::config::{self, ConfigError},
    serving::plain_http::HttpLimits,
    trust::tls::{ClientSettings, TlsFiles},
};

/// Configuration of one node process.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The region this node serves, as a 6-digit GB/T 2260 code: `440000` for
    /// Guangdong's provincial node, `440300` for a node delegated to Shenzhen. The node's
    /// certificate must name the same prefix (`spiffe://tongban/region/44`).
    pub region: RegionCode,
    /// Listening addresses.
    pub listen: ListenConfig,
    /// The node's certificate, key and the federation CA.
    pub tls: TlsFiles,
    /// How to reach the national gateway.
    pub gateway: GatewayLink,
    /// The node's own state (applications, receipts, outbox, idempotency keys, the
    /// keyed-hash secret): a SQLite file (`store = "node.sqlite"`, the default kind) or
    /// a `[store]` table naming PostgreSQL, which several replicas of the node share.
    pub store: StoreConfig,
    /// The province's platform that handles cases.
    pub platform: PlatformConfig,
    /// Outbox delivery and retry behaviour.
    #[serde(default)]
    pub outbox: OutboxConfig,
    /// Time a client gets to complete the TLS handshake.
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// What a client may take of the portal and the admin listener (plain HTTP):
    /// timeouts and connection caps, each listener its own.
    #[serde(default, skip_serializing_if = "ListenerLimits::is_default")]
    pub listener_limits: ListenerLimits,
    /// This node as the issuer of its region's identity assertions and licenses.
    #[serde(default)]
    pub issuer: IssuerConfig,
    /// The other regions' keys (a copy of the registry): what they send is verified.
    pub peers: crate::peers::PeersConfig,
    /// Citizens' access-log inquiries at the portal: the secret the province's portal
    /// proves with that it authenticated the person, and the rate per person (see
    /// `crate::access_inquiry`). Omit and the portal answers no inquiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log: Option<crate::access_inquiry::AccessLogConfig>,
    /// The operator listener (revocations, dead letters, `/reload`): HTTPS, an operator
    /// certificate required, roles from its roster (see
    /// `tongban_runtime::serving::operator_listener`). Omit to disable: the node's TLS
    /// files then reload by SIGHUP or the file watch only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operators: Option<tongban_runtime::serving::operator_listener::OperatorConfig>,
    /// Pre-review lookups through the gateway (identity, licenses).
    #[serde(default)]
    pub recognition: RecognitionConfig,
    /// The official calendar promised dates count working days in: the release's
    /// schedules, and a folder of further years and regions' overlays.
    #[serde(
        default,
        skip_serializing_if = "crate::calendar::CalendarConfig::is_default"
    )]
    pub calendar: crate::calendar::CalendarConfig,
    /// Citizens' evaluations: when a poor one's follow-up is due.
    #[serde(
        default,
        skip_serializing_if = "crate::evaluation_config::EvaluationConfig::is_default"
    )]
    pub evaluations: crate::evaluation_config::EvaluationConfig,
    /// Traces (OTLP) and metrics; see the README's "Telemetry" section.
    #[serde(
        default,
        skip_serializing_if = "tongban_runtime::observability::traces::TelemetryConfig::is_default"
    )]
    pub telemetry: tongban_runtime::observability::traces::TelemetryConfig,
    /// The node's audit trail (what it accepted and handed over): a hash-chained,
    /// signed file. Default `node-audit.log` beside this config.
    #[serde(default = "default_trail", skip_serializing_if = "is_default_trail")]
    pub audit: tongban_runtime::audit::trail::TrailSettings,
    /// The file this config was loaded from (absolute), read again by a reload for
    /// what may change while the node runs (its issuer keys); `None` when built in code.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

fn default_trail() -> tongban_runtime::audit::trail::TrailSettings {
    tongban_runtime::audit::trail::TrailSettings::at("node-audit.log")
}

fn is_default_trail(settings: &tongban_runtime::audit::trail::TrailSettings) -> bool {
    *settings == default_trail()
}

/// What this node signs with, and for how long what it signs is good.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Ed25519 signing keys (PKCS#8 PEM files), separate from the TLS key. The newest
    /// key whose `not_before` has passed signs; list the next key beside the current
    /// one (both registered at the gateway with overlapping windows) to roll over
    /// without an outage. Without keys the node answers no lookups.
    #[serde(default)]
    pub keys: Vec<SigningKeyConfig>,
    /// How long an identity assertion is valid. Default 1 hour.
    #[serde(default, with = "humantime_serde::option")]
    pub assertion_validity: Option<Duration>,
}

/// One signing key.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyConfig {
    /// The key's id, as registered for this region at the gateway (`44-2026a`).
    pub id: String,
    /// The PKCS#8 PEM file.
    pub file: PathBuf,
    /// When the key starts signing (RFC 3339); omit for "now".
    #[serde(default, with = "humantime_serde::option")]
    pub not_before: Option<std::time::SystemTime>,
}

/// How pre-review asks the federation.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecognitionConfig {
    /// How long a filing waits for its lookups before it is receipted as waiting in
    /// pre-review (the lookups then continue from the outbox).
    #[serde(with = "humantime_serde")]
    pub lookup_timeout: Duration,
    /// How long a case may wait in pre-review for an issuing region that cannot be
    /// asked: then it becomes a dead letter an operator sees (alert
    /// `TongbanDeadLetters`), replays once the region answers, or closes with a reason
    /// the citizen reads. Default 24 h.
    #[serde(default = "default_verification_deadline", with = "humantime_serde")]
    pub verification_deadline: Duration,
}

fn default_verification_deadline() -> Duration {
    Duration::from_secs(24 * 3600)
}

impl Default for RecognitionConfig {
    fn default() -> Self {
        Self {
            lookup_timeout: Duration::from_secs(3),
            verification_deadline: default_verification_deadline(),
        }
    }
}

/// Listening addresses of a node.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// Federation listener (gRPC over mutual TLS 1.3) that the gateway calls.
    pub federation: SocketAddr,
    /// Local portal API (HTTP+JSON) for the province's portal and counters, plus
    /// `/healthz` and `/readyz`. Keep it on a private interface or behind the portal.
    pub portal: SocketAddr,
    /// Plaintext admin listener for probes and scrapers (`/healthz`, `/readyz`,
    /// `/metrics`); nothing there changes state. Omit to disable.
    #[serde(default)]
    pub admin: Option<SocketAddr>,
}

/// What a client may take of the node's plain HTTP listeners, the portal and the admin
/// listener: how long it may be slow, and how many connections it may hold open. Each
/// listener has its own cap, so a flood of the portal leaves the admin listener's
/// `/healthz` and `/readyz` their slots; a connection beyond a cap or a client's share
/// is closed as it arrives.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerLimits {
    /// Time a client gets to send a request's line and headers, counted from the accept
    /// and, on a keep-alive connection, from each answer (so a connection idle this long
    /// between requests is closed too). Default 10 s.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A connection on which no byte moves either way this long is closed: a client
    /// that stops reading its answer or stops sending its body. Default 60 s; must be
    /// longer than `request_timeout`, since a connection waiting for its answer moves
    /// nothing.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Time a whole request may take, its body read included, before it is answered
    /// `408`. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Connections the portal holds open at once. Default 1,024. Lowered at start to
    /// what the process's open-files limit leaves beside the admin listener and the
    /// node's other files (which is logged).
    pub portal_connections: usize,
    /// Connections one client holds open at the portal at once (an IPv4 address, an
    /// IPv6 /64). Default 64. The province's portal in front may reach the node from a
    /// few addresses: give each at least its connection pool's size.
    pub portal_connections_per_client: usize,
    /// Connections the admin listener holds open at once. Default 64.
    pub admin_connections: usize,
    /// Connections one client holds open at the admin listener at once. Default 8.
    pub admin_connections_per_client: usize,
    /// TLS handshakes in progress at once on the federation listener from one source
    /// (an IPv4 address, an IPv6 /64); beyond, a new connection is closed at once, so
    /// one host's silent connects cannot take the slots the gateway needs. Default 16.
    /// Behind a load balancer that hides the gateway's addresses, raise it to 256.
    pub federation_handshakes_per_source: usize,
    /// Time a new federation connection gets to send its whole ClientHello. Default 2 s.
    #[serde(with = "humantime_serde")]
    pub client_hello_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        let (portal, admin) = (HttpLimits::portal(), HttpLimits::admin());
        Self {
            header_read_timeout: portal.header_read_timeout,
            idle_timeout: portal.idle_timeout,
            request_timeout: portal.request_timeout,
            portal_connections: portal.max_connections,
            portal_connections_per_client: portal.max_connections_per_client,
            admin_connections: admin.max_connections,
            admin_connections_per_client: admin.max_connections_per_client,
            federation_handshakes_per_source:
                tongban_runtime::serving::handshakes::DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
            client_hello_timeout:
                tongban_runtime::serving::handshakes::DEFAULT_CLIENT_HELLO_TIMEOUT,
        }
    }
}

/// Files the node keeps open besides its plain HTTP connections: databases, logs and
/// the audit trail, the federation listener's handshakes (256) and connections, its
/// connections to the gateways and the platform. A node held 22 idle (`slowloris.rs`).
pub const OTHER_OPEN_FILES: usize = 384;

impl ListenerLimits {
    /// The federation listener's handshake limits, with the node's handshake timeout.
    pub fn federation(&self, handshake_timeout: Duration) -> HandshakeLimits {
        HandshakeLimits {
            timeout: handshake_timeout,
            client_hello_timeout: self.client_hello_timeout.min(handshake_timeout),
            max_pending: tongban_runtime::serving::incoming::DEFAULT_MAX_HANDSHAKES,
            max_pending_per_source: self
                .federation_handshakes_per_source
                .min(tongban_runtime::serving::incoming::DEFAULT_MAX_HANDSHAKES),
        }
    }

    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The portal's limits.
    pub fn portal(&self) -> HttpLimits {
        HttpLimits {
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            request_timeout: self.request_timeout,
            max_connections: self.portal_connections,
            max_connections_per_client: self.portal_connections_per_client,
        }
    }

    /// The admin listener's limits.
    pub fn admin(&self) -> HttpLimits {
        HttpLimits {
            max_connections: self.admin_connections,
            max_connections_per_client: self.admin_connections_per_client,
            ..self.portal()
        }
    }

    /// Open files the caps need, [`OTHER_OPEN_FILES`] included.
    pub fn open_files_wanted(&self) -> u64 {
        (self.portal_connections + self.admin_connections + OTHER_OPEN_FILES) as u64
    }

    /// These limits with the portal's cap lowered to what `open_files` (the process's
    /// limit, `None` for none) leaves beside the admin listener and the node's other
    /// files, so that a flood of the portal never takes the files the admin listener's
    /// connections need (at least one portal connection is left).
    pub fn fitted_to(&self, open_files: Option<u64>) -> Self {
        let Some(open_files) = open_files else {
            return self.clone();
        };
        let left = usize::try_from(open_files)
            .unwrap_or(usize::MAX)
            .saturating_sub(self.admin_connections + OTHER_OPEN_FILES);
        let portal_connections = self.portal_connections.min(left).max(1);
        Self {
            portal_connections,
            portal_connections_per_client: self
                .portal_connections_per_client
                .min(portal_connections),
            ..self.clone()
        }
    }

    fn validate(&self, origin: &Path) -> Result<(), ConfigError> {
        let timeouts = [
            ("header_read_timeout", self.header_read_timeout),
            ("idle_timeout", self.idle_timeout),
            ("request_timeout", self.request_timeout),
            ("client_hello_timeout", self.client_hello_timeout),
        ];
        for (field, value) in timeouts {
            if value.is_zero() {
                return Err(ConfigError::field(
                    origin,
                    &format!("listener_limits.{field}"),
                    "must be more than 0",
                ));
            }
        }
        if self.idle_timeout <= self.request_timeout {
            return Err(ConfigError::field(
                origin,
                "listener_limits.idle_timeout",
                "must be longer than request_timeout: a connection waiting for its \
                 answer moves nothing, and would be closed before it came",
            ));
        }
        let caps = [
            (
                "portal",
                self.portal_connections,
                self.portal_connections_per_client,
            ),
            (
                "admin",
                self.admin_connections,
                self.admin_connections_per_client,
            ),
        ];
        for (listener, total, per_client) in caps {
            if per_client == 0 || per_client > total {
                return Err(ConfigError::field(
                    origin,
                    &format!("listener_limits.{listener}_connections_per_client"),
                    format!("must be 1 to {listener}_connections ({total})"),
                ));
            }
        }
        if self.federation_handshakes_per_source == 0 {
            return Err(ConfigError::field(
                origin,
                "listener_limits.federation_handshakes_per_source",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// The link to the gateway.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayLink {
    /// The gateway's federation endpoints, `https://host:port`: one per gateway replica
    /// (or one load-balanced address). Calls are balanced across them. A single
    /// `endpoint = "..."` is accepted too.
    #[serde(alias = "endpoint", deserialize_with = "one_or_many")]
    pub endpoints: Vec<String>,
    /// TLS name the gateway's certificate must carry. Default `gateway.tongban.internal`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Connection settings.
    #[serde(default)]
    pub client: ClientSettings,
}

/// Which platform adapter to use.
// Read once at start: the size of a variant costs nothing worth a `Box` that every
// writer of a config would have to spell.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PlatformConfig {
    /// The embedded SQLite platform (cases, residents, licenses) for development, demos
    /// and provinces without their own platform API.
    Embedded {
        /// The platform's SQLite database file.
        database: PathBuf,
        /// Seed this many synthetic residents (with licenses) of this region on first start.
        #[serde(default)]
        seed_residents: u32,
        /// A demo clerk that approves every case on a timer: accepted → in review after
        /// this long, in review → approved after as long again. Off when omitted (cases
        /// then wait for a clerk's decision). `review_step`, its former name, is read
        /// as this.
        #[serde(
            default,
            alias = "review_step",
            with = "humantime_serde::option",
            skip_serializing_if = "Option::is_none"
        )]
        auto_approve_after: Option<Duration>,
    },
    /// A province's own platform over the published contract
    /// (`proto/platform/v1/openapi.json`), over HTTPS only.
    Http(crate::platform::http::HttpPlatformConfig),
}

/// Outbox delivery settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// How often the outbox is scanned when nothing new was written.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// First retry delay after a failed delivery; doubles per attempt.
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Longest retry delay.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// Entries attempted at once, over all target regions (at most 8 per region, so a
    /// slow region holds only its own share).
    pub batch_size: u32,
    /// How long delivered and closed entries, and the idempotency keys of deliveries
    /// received, are kept before they are pruned. Default 30 days. Dead letters and
    /// pending entries are never pruned.
    #[serde(with = "humantime_serde")]
    pub retain_finished: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_secs(60),
            batch_size: 64,
            retain_finished: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// A string or a list of strings.
fn one_or_many<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(de)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

fn default_handshake_timeout() -> Duration {
    Duration::from_secs(5)
}

impl NodeConfig {
    /// Loads a config file (a path relative to the working directory), makes every path
    /// in it absolute (relative ones taken from the file's folder) and validates it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut config: Self = config::load_resolved(path)?;
        config.validate(path)?;
        config.source = Some(config::absolute(path)?);
        Ok(config)
    }

    /// Checks what the types alone cannot.
    pub fn validate(&self, origin: &Path) -> Result<(), ConfigError> {
        self.evaluations.validate().map_err(|problem| {
            ConfigError::field(origin, "evaluations.follow_up_working_days", problem)
        })?;
        if self.gateway.endpoints.is_empty() {
            return Err(ConfigError::field(
                origin,
                "gateway.endpoints",
                "at least one gateway endpoint is required",
            ));
        }
        for (i, endpoint) in self.gateway.endpoints.iter().enumerate() {
            if !endpoint.starts_with("https://") {
                return Err(ConfigError::field(
                    origin,
                    &format!("gateway.endpoints[{i}]"),
                    "must be https:// (federation traffic is never plaintext)",
                ));
            }
        }
        for (i, key) in self.issuer.keys.iter().enumerate() {
            if key.id.is_empty()
                || key.id.len() > 64
                || !key.id.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(ConfigError::field(
                    origin,
                    &format!("issuer.keys[{i}].id"),
                    "must be 1 to 64 visible ASCII characters",
                ));
            }
        }
        if let PlatformConfig::Http(http) = &self.platform {
            http.validate(origin)?;
        }
        self.listener_limits.validate(origin)?;
        if self.outbox.batch_size == 0 {
            return Err(ConfigError::field(
                origin,
                "outbox.batch_size",
                "must be at least 1",
            ));
        }
        if let StoreConfig::Postgres(pg) = &self.store {
            // Claims are renewed every third of the lease, checked at least every poll.
            let floor = (self.outbox.poll_interval * 3).max(Duration::from_secs(3));
            if pg.lease < floor {
                return Err(ConfigError::field(
                    origin,
                    "store.lease",
                    format!(
                        "must be at least {} (three outbox polls, and 3 s)",
                        humantime_serde::re::humantime::format_duration(floor)
                    ),
                ));
            }
            if pg.url.trim().is_empty() {
                return Err(ConfigError::field(origin, "store.url", "is empty"));
            }
        }
        Ok(())
    }

    /// The prefix this node's certificate must name (`440000` → `44`).
    pub fn prefix(&self) -> Result<RegionPrefix, ConfigError> {
        RegionPrefix::parse(self.region.significant_prefix())
            .map_err(|e| ConfigError::field(Path::new("node config"), "region", e))
    }

    /// The TLS name of the gateway.
    pub fn gateway_server_name(&self) -> String {
        self.gateway
            .server_name
            .clone()
            .unwrap_or_else(|| "gateway.tongban.internal".to_owned())
    }
}

impl config::FilePaths for NodeConfig {
    fn file_paths(&mut self) -> Vec<&mut PathBuf> {
        let mut paths = self.tls.file_paths();
        paths.extend(self.store.file_paths());
        paths.push(&mut self.audit.file);
        paths.extend(self.issuer.keys.iter_mut().map(|k| &mut k.file));
        paths.push(&mut self.peers.registry);
        paths.extend(self.access_log.as_mut().map(|a| &mut a.portal_secret));
        paths.extend(self.calendar.folder.as_mut());
        match &mut self.platform {
            PlatformConfig::Embedded { database, .. } => paths.push(database),
            PlatformConfig::Http(http) => paths.extend(http.file_paths()),
        }
        paths
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        for r in ["11", "31", "44"] {
            let path = dir.join(format!("node-{r}.toml"));
            let config = NodeConfig::load(&path).unwrap();
            assert_eq!(config.prefix().unwrap().as_str(), r);
            let store = config.store.sqlite_path().unwrap().to_owned();
            assert!(store.is_absolute() && config.tls.key.is_absolute());
            let again = NodeConfig::load(&path).unwrap();
            assert_eq!(again.store.sqlite_path(), Some(store.as_path()));
            assert_eq!(again.tls.key, config.tls.key);
        }
    }

    /// Both kinds of store read back as written; a wrong key or kind is named.
    #[test]
    fn the_store_section_round_trips_and_names_mistakes() {
        #[derive(Deserialize, Serialize)]
        struct Doc {
            store: StoreConfig,
        }
        let read = |text: &str| toml::from_str::<Doc>(text).map(|d| d.store);
        let sqlite = read("store = \"node.db\"").unwrap();
        assert_eq!(sqlite.sqlite_path(), Some(Path::new("node.db")));
        let table = read("[store]\nkind = \"sqlite\"\npath = \"n.db\"").unwrap();
        assert_eq!(table.sqlite_path(), Some(Path::new("n.db")));
        let pg = read(
            "[store]\nkind = \"postgres\"\nurl = \"postgres://n@127.0.0.1/db\"\nlease = \"20s\"\n[store.tls]\nmode = \"verify-full\"",
        )
        .unwrap();
        let StoreConfig::Postgres(settings) = &pg else {
            panic!("{pg:?}")
        };
        assert_eq!(settings.lease, Duration::from_secs(20));
        assert_eq!(settings.tls.mode.as_deref(), Some("verify-full"));
        let written = toml::to_string(&Doc { store: pg.clone() }).unwrap();
        let again = read(&written).unwrap();
        assert!(
            matches!(again, StoreConfig::Postgres(p) if p.url == settings.url),
            "{written}"
        );
        let typo = read("[store]\nkind = \"postgres\"\nurl = \"x\"\nleese = \"1s\"")
            .err()
            .unwrap();
        assert!(typo.to_string().contains("leese"), "{typo}");
        let kind = read("[store]\nkind = \"mysql\"").err().unwrap();
        assert!(kind.to_string().contains("mysql"), "{kind}");
    }

    #[test]
    fn errors_name_the_field() {
        let base = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/node-44.toml"),
        )
        .unwrap();
        let bad_region = base.replace("region = \"440000\"", "region = \"44\"");
        let err = config::parse::<NodeConfig>(&bad_region, Path::new("n.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`region`"), "{err}");
        let bad_kind = base.replace("kind = \"embedded\"", "kind = \"http\"");
        let err = config::parse::<NodeConfig>(&bad_kind, Path::new("n.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("platform"), "{err}");
        let bad_kind = base.replace("kind = \"embedded\"", "kind = \"soap\"");
        let err = config::parse::<NodeConfig>(&bad_kind, Path::new("n.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("platform"), "{err}");
        let plaintext = base.replace("https://127.0.0.1:7000", "http://127.0.0.1:7000");
        let parsed: NodeConfig = config::parse(&plaintext, Path::new("n.toml")).unwrap();
        let err = parsed
            .validate(Path::new("n.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("gateway.endpoint"), "{err}");
    }

    #[test]
    fn listener_limits_default_when_absent_and_are_checked_when_given() {
        let base = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/node-44.toml"),
        )
        .unwrap();
        // The file's own section taken out, whatever follows it.
        let without = match base.find("[listener_limits]") {
            None => base.clone(),
            Some(at) => {
                let end = base[at + 1..]
                    .find("\n[")
                    .map_or(base.len(), |n| at + 2 + n);
                format!("{}{}", &base[..at], &base[end..])
            }
        };
        let parsed: NodeConfig = config::parse(&without, Path::new("n.toml")).unwrap();
        assert_eq!(parsed.listener_limits, ListenerLimits::default());
        assert_eq!(parsed.listener_limits.portal(), HttpLimits::portal());
        assert_eq!(parsed.listener_limits.admin(), HttpLimits::admin());
        let with = |section: &str| format!("{without}\n[listener_limits]\n{section}\n");
        let parsed: NodeConfig = config::parse(
            &with("header_read_timeout = \"2s\"\nportal_connections = 100"),
            Path::new("n.toml"),
        )
        .unwrap();
        parsed.validate(Path::new("n.toml")).unwrap();
        let portal = parsed.listener_limits.portal();
        assert_eq!(portal.header_read_timeout, Duration::from_secs(2));
        assert_eq!(
            (portal.max_connections, portal.max_connections_per_client),
            (100, 64)
        );
        assert_eq!(parsed.listener_limits.admin().max_connections, 64);
        let err =
            config::parse::<NodeConfig>(&with("header_timeout = \"2s\""), Path::new("n.toml"))
                .unwrap_err()
                .to_string();
        assert!(err.contains("header_timeout"), "{err}");
        for (section, field) in [
            ("idle_timeout = \"30s\"", "idle_timeout"),
            ("request_timeout = \"0s\"", "request_timeout"),
            (
                "admin_connections_per_client = 65",
                "admin_connections_per_client",
            ),
        ] {
            let parsed: NodeConfig = config::parse(&with(section), Path::new("n.toml")).unwrap();
            let err = parsed
                .validate(Path::new("n.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{section}: {err}");
        }
    }

    #[test]
    fn the_portal_gives_way_to_the_open_files_limit_and_the_admin_does_not() {
        let limits = ListenerLimits::default();
        assert_eq!(limits.fitted_to(None), limits);
        assert_eq!(limits.fitted_to(Some(1 << 20)), limits);
        let fitted = limits.fitted_to(Some(1024));
        assert_eq!(fitted.portal_connections, 1024 - 64 - OTHER_OPEN_FILES);
        assert_eq!(fitted.admin_connections, 64);
        let tiny = limits.fitted_to(Some(256));
        assert_eq!(
            (tiny.portal_connections, tiny.portal_connections_per_client),
            (1, 1)
        );
    }

    /// `[platform]` of deploy/node-44.toml replaced by `platform`.
    fn with_platform(platform: &str) -> String {
        let base = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/node-44.toml"),
        )
        .unwrap();
        let start = base.find("[platform]").unwrap();
        let end = start + base[start..].find("\n[outbox]").unwrap();
        format!("{}{platform}\n{}", &base[..start], &base[end..])
    }

    #[test]
    fn an_http_platform_parses_with_its_paths_resolved_and_plain_http_refused() {
        let text = with_platform(
            r#"[platform]
kind = "http"
url = "https://platform.gd.example:8443"
timeout = "3s"
retries = 2
circuit_failures = 4
circuit_open_for = "10s"

[platform.tls]
ca = "certs/platform-ca.pem"
cert = "certs/node-44-client.pem"
key = "certs/node-44-client.key"

[platform.auth]
kind = "hmac"
app_key = "tongban-node-44"
secret_file = "secrets/platform-hmac"

[platform.status_codes]
"01" = "received"
"02" = "accepted"
"03" = "more_materials_needed"
"09" = "approved"
"10" = "rejected"
"#,
        );
        let path = Path::new("/etc/tongban/node.toml");
        let mut parsed: NodeConfig = config::parse(&text, path).unwrap();
        parsed.validate(path).unwrap();
        config::resolve_paths(&mut parsed, Path::new("/etc/tongban"));
        let PlatformConfig::Http(http) = &parsed.platform else {
            panic!("not http: {:?}", parsed.platform);
        };
        assert_eq!(http.timeout, Duration::from_secs(3));
        assert_eq!(http.retries, 2);
        assert_eq!(http.poll_interval, Duration::from_secs(1));
        assert_eq!(http.tls.ca, Path::new("/etc/tongban/certs/platform-ca.pem"));
        assert!(matches!(
            &http.auth,
            crate::platform::http::PlatformAuth::Hmac { secret_file, .. }
                if secret_file == Path::new("/etc/tongban/secrets/platform-hmac")
        ));
        assert_eq!(
            http.status_codes.canonical("03"),
            Ok(crate::platform::contract::status::CanonicalStatus::MoreMaterialsNeeded)
        );

        let plain = text.replace("https://platform", "http://platform");
        let parsed: NodeConfig = config::parse(&plain, path).unwrap();
        let err = parsed.validate(path).unwrap_err().to_string();
        assert!(err.contains("platform.url") && err.contains("TLS"), "{err}");
        let unknown = text.replace("retries = 2", "retries = 2\nretry = 1");
        let err = config::parse::<NodeConfig>(&unknown, path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("retry"), "{err}");
    }

    #[test]
    fn the_demo_clerk_is_off_unless_asked_and_review_step_still_reads() {
        let auto = |platform: &str| {
            let parsed: NodeConfig =
                config::parse(&with_platform(platform), Path::new("n.toml")).unwrap();
            match parsed.platform {
                PlatformConfig::Embedded {
                    auto_approve_after, ..
                } => auto_approve_after,
                other => panic!("{other:?}"),
            }
        };
        let embedded = "[platform]\nkind = \"embedded\"\ndatabase = \"p.db\"\n";
        assert_eq!(auto(embedded), None);
        assert_eq!(
            auto(&format!("{embedded}auto_approve_after = \"2s\"\n")),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            auto(&format!("{embedded}review_step = \"5s\"\n")),
            Some(Duration::from_secs(5))
        );
    }
}
