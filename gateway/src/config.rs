//! The gateway's config file (TOML). Every field is documented; unknown keys are
//! rejected; relative paths are relative to the config file's folder (the rule is
//! `tongban_runtime::process::config`'s, shared with the node).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

pub use crate::admission::Limits;
use serde::{Deserialize, Serialize};
use tongban_runtime::{
    observability::traces::TelemetryConfig,
    postgres::config::PostgresConfig,
    process::config::{self, ConfigError},
    serving::{handshakes::HandshakeLimits, operator_listener::OperatorConfig},
    trust::tls::{ClientSettings, TlsFiles},
};

/// Configuration of one gateway process.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address of the federation listener (gRPC over mutual TLS 1.3).
    pub listen: SocketAddr,
    /// Address of the plaintext admin listener: `/healthz`, `/readyz` and `/metrics`,
    /// for probes and scrapers, which carry no client certificate; nothing there changes
    /// state. Omit to disable.
    #[serde(default)]
    pub admin_listen: Option<SocketAddr>,
    /// The operator listener (`/reload`, `/console`): HTTPS, an operator certificate
    /// required, roles from its roster (see `tongban_runtime::serving::operator_listener`).
    /// Omit to disable: reloads then come by SIGHUP or the file watch only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operators: Option<OperatorConfig>,
    /// The gateway's certificate, key and the federation CA.
    pub tls: TlsFiles,
    /// The node registry file: region prefixes and their endpoints.
    pub registry: PathBuf,
    /// The national catalog (JSON). Omit to serve the catalog built into this release.
    #[serde(default)]
    pub catalog: Option<PathBuf>,
    /// The catalog ledger (`crate::catalog::ledger`): where the featured one-things
    /// regions publish and adopt through this gateway are recorded, replayed over
    /// `catalog` at start. Omit, and the gateway serves `catalog` only and refuses
    /// publications and adoptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_ledger: Option<PathBuf>,
    /// The data-sharing responsibility list (JSON, see `crate::sharing`). Omit to use
    /// the list built into this release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharing_list: Option<PathBuf>,
    /// Connection settings for calls to nodes.
    #[serde(default)]
    pub upstream: ClientSettings,
    /// Time a client gets to complete the TLS handshake.
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Threads that serve traffic. `1` (the default) runs the whole gateway on one
    /// thread: no cross-thread wake-ups, the least CPU per call (BENCHMARKS.md measures
    /// it); scale out with replicas behind the load balancer. More than 1 uses Tokio's
    /// work-stealing scheduler with that many workers.
    #[serde(default = "default_worker_threads")]
    pub worker_threads: usize,
    /// Identity and license mutual recognition: the caches of verified lookups.
    #[serde(default, skip_serializing_if = "RecognitionSettings::is_default")]
    pub recognition: RecognitionSettings,
    /// Traces (OTLP) and metrics; see the README's "Telemetry" section.
    #[serde(default, skip_serializing_if = "TelemetryConfig::is_default")]
    pub telemetry: TelemetryConfig,
    /// Bounds on calls, buffered bytes, connections and handshakes; see
    /// `crate::admission`.
    #[serde(default, skip_serializing_if = "Limits::is_default")]
    pub limits: Limits,
    /// The operator console on the operator listener (`/console`).
    #[serde(default, skip_serializing_if = "ConsoleSettings::is_default")]
    pub console: ConsoleSettings,
    /// The audit trail: a hash-chained file of every call, see `[audit]`.
    #[serde(default = "default_trail", skip_serializing_if = "is_default_trail")]
    pub audit: AuditSettings,
    /// The revocation log every replica follows (PostgreSQL), see `[revocation_log]`.
    /// Omit for one gateway: a revocation then reaches only the replica it is
    /// published to, and no database is needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_log: Option<RevocationLogSettings>,
    /// Safety checks on reloads, see `[reload]`.
    #[serde(default, skip_serializing_if = "ReloadSettings::is_default")]
    pub reload: ReloadSettings,
}

/// `[reload]`: what a reload (SIGHUP, file change, `POST /reload`) refuses unless an
/// operator forces it (`POST /reload?force=true`): a registry rewritten by mistake
/// must not cut the federation off.
///
/// ```toml
/// [reload]
/// max_regions_dropped_share = 0.25
/// ```
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadSettings {
    /// Largest share (0 to 1) of the registered region prefixes one reload may
    /// remove. A registry with no region at all is refused whatever this says.
    pub max_regions_dropped_share: f64,
}

impl Default for ReloadSettings {
    fn default() -> Self {
        Self {
            max_regions_dropped_share: 0.25,
        }
    }
}

impl ReloadSettings {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// `[revocation_log]`: the shared, ordered log of revocations on PostgreSQL. A replica
/// acknowledges a revocation only once it is in the log, and applies every one the
/// others wrote, so all replicas behind one address answer alike.
///
/// ```toml
/// [revocation_log]
/// poll_interval = "1s"
/// max_staleness = "10s"
/// [revocation_log.database]
/// url = "postgres://tongban_gateway@db.internal:5432/tongban"
/// password_file = "/run/secrets/revocation-log-password"
/// [revocation_log.database.tls]
/// mode = "verify-full"
/// ca = "/etc/tongban/db-ca.pem"
/// ```
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationLogSettings {
    /// The database: `url`, `password_file`, `[revocation_log.database.tls]` and
    /// `[revocation_log.database.pool]`, as a node's `[store]` names them.
    pub database: PostgresConfig,
    /// This replica's name, written with each revocation it appends and shown as its
    /// connections' `application_name`. Default: the host's name (the pod's on
    /// Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// How often the log is read when no notification arrived: notifications are only
    /// a wake-up, lost while the listening connection is down.
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long the log may go unread (the database unreachable) before this replica
    /// reports not ready: past it, it may be answering "recognized" for a license
    /// another replica has already revoked.
    #[serde(default = "default_max_staleness", with = "humantime_serde")]
    pub max_staleness: Duration,
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_max_staleness() -> Duration {
    Duration::from_secs(10)
}

impl RevocationLogSettings {
    /// Settings for the database at `url`, everything else the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            database: PostgresConfig::new(url),
            replica: None,
            poll_interval: default_poll_interval(),
            max_staleness: default_max_staleness(),
        }
    }

    /// This replica's name: configured, else the host's name, else one from the
    /// process id.
    pub fn replica_name(&self) -> String {
        self.replica
            .clone()
            .or_else(tongban_runtime::process::host::host_name)
            .unwrap_or_else(|| format!("gateway-{}", std::process::id()))
    }

    fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if self.poll_interval < Duration::from_millis(10) {
            return Err(("revocation_log.poll_interval", "must be at least 10ms"));
        }
        // Otherwise a replica would report not ready between two healthy reads.
        if self.max_staleness <= self.poll_interval {
            return Err((
                "revocation_log.max_staleness",
                "must be longer than poll_interval",
            ));
        }
        if self
            .replica
            .as_ref()
            .is_some_and(|r| r.is_empty() || r.len() > 64)
        {
            return Err(("revocation_log.replica", "must be 1 to 64 characters"));
        }
        if self.database.pool.max_connections < 2 {
            return Err((
                "revocation_log.database.pool.max_connections",
                "must be at least 2 (one listens for wake-ups)",
            ));
        }
        Ok(())
    }
}

/// Where the audit trail is written, when it reaches the disk and how often it is
/// signed. Default file `gateway-audit.log`.
pub type AuditSettings = tongban_runtime::audit::trail::TrailSettings;

/// The trail's settings when a config names none.
pub fn default_trail() -> AuditSettings {
    AuditSettings::at("gateway-audit.log")
}

fn is_default_trail(settings: &AuditSettings) -> bool {
    *settings == default_trail()
}

/// What the operator console samples besides the gateway's own metrics.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSettings {
    /// Region code → URL of that node's `/metrics` (its admin port), for the outbox
    /// backlog and the nodes' certificate expiry. Nodes not listed are not shown there.
    pub node_metrics: BTreeMap<String, String>,
    /// How often the console samples; it keeps the last 60 s.
    #[serde(with = "humantime_serde")]
    pub sample_every: Duration,
}

impl ConsoleSettings {
    /// Whether these are the defaults (then a written config leaves the section out).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            node_metrics: BTreeMap::new(),
            sample_every: Duration::from_secs(2),
        }
    }
}

/// The caches of verified identity assertions and license verdicts.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecognitionSettings {
    /// File holding the secret (at least 32 bytes) for keyed hashes of ID numbers and
    /// license ids in cache keys and logs; give every replica the same file so their
    /// log references agree. Omit to draw a random secret at start.
    pub hash_key: Option<PathBuf>,
    /// Most identity assertions cached at once (a bound besides `identity_cache_bytes`).
    pub identity_entries: u64,
    /// Most license verdicts cached at once (the grace copies are bounded alike; a
    /// bound besides `license_cache_bytes`).
    pub license_entries: u64,
    /// Bytes the identity cache may hold: its entries as estimated, the cache's own
    /// bookkeeping (about 400 bytes an entry) included. At least 1 MiB.
    pub identity_cache_bytes: u64,
    /// Bytes the license cache may hold, alike; the grace copies and the holder lists
    /// may hold a quarter of it each. An entry over 64 KiB (a license stating a huge
    /// `fields` map) is answered but never cached. At least 1 MiB.
    pub license_cache_bytes: u64,
    /// Longest a verified answer is served from cache before the issuer is asked
    /// again; never beyond the answer's own validity.
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    /// How long "not found", "not recognized" and other negative answers are cached.
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// An identity assertion leaves the cache this long before it expires.
    #[serde(with = "humantime_serde")]
    pub expiry_margin: Duration,
    /// How long a holder's list of licenses is cached.
    #[serde(with = "humantime_serde")]
    pub holder_list_ttl: Duration,
    /// Per license type, how long past its freshness a recognized license may still be
    /// answered when its issuer cannot be reached (never past the license's own
    /// validity; every such answer is logged and counted). At most 24 h; types not
    /// listed get none: the answer is "cannot verify now".
    #[serde(with = "grace_map")]
    pub grace: BTreeMap<String, Duration>,
    /// Revocations: how long remembered, how many per member, how fast; see
    /// `[recognition.revocations]`.
    pub revocations: RevocationSettings,
}

impl RecognitionSettings {
    /// Whether these are the defaults (then a written config leaves the section out).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Longest grace an operator may allow.
pub const MAX_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Fewest bytes a cache may be given: room for 16 of the largest entries it keeps.
const MIN_CACHE_BYTES: u64 = 1 << 20;

impl Default for RecognitionSettings {
    fn default() -> Self {
        Self {
            hash_key: None,
            identity_entries: 100_000,
            license_entries: 100_000,
            // 32 MiB in all with the grace copies and the holder lists: well under
            // the chart's 256 MiB beside the 128 MiB buffer budget.
            identity_cache_bytes: 8 << 20,
            license_cache_bytes: 16 << 20,
            max_ttl: Duration::from_secs(600),
            negative_ttl: Duration::from_secs(30),
            expiry_margin: Duration::from_secs(30),
            holder_list_ttl: Duration::from_secs(60),
            grace: BTreeMap::new(),
            revocations: RevocationSettings::default(),
        }
    }
}

mod grace_map {
    //! A map of license types to readable durations ("15m").
    use std::{collections::BTreeMap, time::Duration};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<String, Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let text: BTreeMap<&String, String> = map
            .iter()
            .map(|(k, v)| (k, humantime::format_duration(*v).to_string()))
            .collect();
        text.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Duration>, D::Error> {
        let text = BTreeMap::<String, String>::deserialize(d)?;
        text.into_iter()
            .map(|(k, v)| {
                humantime::parse_duration(&v)
                    .map(|d| (k, d))
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }
}

/// `[recognition.revocations]`: the revoked licenses a gateway remembers, charged to the
/// registered member that published each. A member over its ceiling or its rate has its
/// revocations refused RESOURCE_EXHAUSTED (transient, with a pushback: its node's outbox
/// publishes them again); revocations read from the shared log were accepted by some
/// replica and are always applied, counted all the same.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RevocationSettings {
    /// How long a revocation is remembered from its publication. At least `max_ttl` +
    /// the longest `grace` + `holder_list_ttl`: by then no cached answer can still hold
    /// the license, and its issuer's own answer says "revoked".
    #[serde(with = "humantime_serde")]
    pub memory: Duration,
    /// Most revocations one member may have remembered at once. About 60 bytes each:
    /// 40 members at 10,000 take about 25 MiB of the chart's 256 MiB.
    pub max_per_issuer: usize,
    /// Revocations a second one member may publish once its `burst` is spent.
    pub per_second: u32,
    pub burst: u32,
}

impl Default for RevocationSettings {
    fn default() -> Self {
        Self {
            memory: Duration::from_secs(7 * 24 * 3600),
            max_per_issuer: 10_000,
            per_second: 50,
            burst: 2_000,
        }
    }
}

impl RevocationSettings {
    /// Checks these against the caches of `recognition` (their own section).
    fn check(&self, recognition: &RecognitionSettings) -> Result<(), (&'static str, String)> {
        let longest_grace = recognition
            .grace
            .values()
            .max()
            .copied()
            .unwrap_or_default();
        let floor = recognition.max_ttl + longest_grace + recognition.holder_list_ttl;
        if self.memory < floor {
            return Err((
                "recognition.revocations.memory",
                format!(
                    "must be at least max_ttl + the longest grace + holder_list_ttl ({}): \
                     a cached answer may hold a license that long",
                    humantime::format_duration(floor)
                ),
            ));
        }
        if self.max_per_issuer == 0 || self.per_second == 0 || self.burst == 0 {
            return Err((
                "recognition.revocations",
                "max_per_issuer, per_second and burst must be at least 1".to_owned(),
            ));
        }
        Ok(())
    }
}

fn default_handshake_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_worker_threads() -> usize {
    1
}

impl GatewayConfig {
    /// Loads a config file (a path relative to the working directory), makes every
    /// path in it absolute (relative ones taken from the file's folder) and validates
    /// it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = config::load_resolved(path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// The federation listener's bounds on handshakes: the handshake timeout and the
    /// handshake limits of `[limits]`.
    pub fn handshake_limits(&self) -> HandshakeLimits {
        HandshakeLimits {
            timeout: self.handshake_timeout,
            client_hello_timeout: self.limits.client_hello_timeout,
            max_pending: self.limits.max_concurrent_handshakes,
            max_pending_per_source: self.limits.max_handshakes_per_source,
        }
    }

    /// Checks what the types alone cannot.
    pub fn validate(&self, origin: &Path) -> Result<(), ConfigError> {
        let r = &self.recognition;
        for (license_type, grace) in &r.grace {
            if *grace > MAX_GRACE {
                return Err(ConfigError::field(
                    origin,
                    &format!("recognition.grace.{license_type}"),
                    "may be at most 24h",
                ));
            }
        }
        if let Err(problem) = self.limits.check() {
            return Err(ConfigError::field(origin, "limits", problem));
        }
        if self.console.sample_every < Duration::from_millis(100) {
            return Err(ConfigError::field(
                origin,
                "console.sample_every",
                "must be at least 100ms",
            ));
        }
        for (region, url) in &self.console.node_metrics {
            if !url.starts_with("http://") || url.parse::<http::Uri>().is_err() {
                return Err(ConfigError::field(
                    origin,
                    &format!("console.node_metrics.{region}"),
                    "must be an http:// URL of a node's admin /metrics",
                ));
            }
        }
        if r.identity_entries == 0 || r.license_entries == 0 {
            return Err(ConfigError::field(
                origin,
                "recognition",
                "cache sizes must be at least 1",
            ));
        }
        if r.identity_cache_bytes.min(r.license_cache_bytes) < MIN_CACHE_BYTES {
            return Err(ConfigError::field(
                origin,
                "recognition",
                "identity_cache_bytes and license_cache_bytes must be at least 1 MiB",
            ));
        }
        if let Some(Err((field, problem))) = self.revocation_log.as_ref().map(|l| l.check()) {
            return Err(ConfigError::field(origin, field, problem));
        }
        if let Err((field, problem)) = r.revocations.check(r) {
            return Err(ConfigError::field(origin, field, problem));
        }
        if !(0.0..=1.0).contains(&self.reload.max_regions_dropped_share) {
            return Err(ConfigError::field(
                origin,
                "reload.max_regions_dropped_share",
                "must be between 0 and 1",
            ));
        }
        Ok(())
    }
}

impl config::FilePaths for GatewayConfig {
    fn file_paths(&mut self) -> Vec<&mut PathBuf> {
        let mut paths = self.tls.file_paths();
        paths.push(&mut self.registry);
        paths.extend(self.catalog.as_mut());
        paths.extend(self.catalog_ledger.as_mut());
        paths.extend(self.sharing_list.as_mut());
        paths.extend(self.recognition.hash_key.as_mut());
        paths.push(&mut self.audit.file);
        if let Some(log) = &mut self.revocation_log {
            let db = &mut log.database;
            paths.extend(
                [
                    &mut db.password_file,
                    &mut db.tls.ca,
                    &mut db.tls.cert,
                    &mut db.tls.key,
                ]
                .into_iter()
                .filter_map(Option::as_mut),
            );
        }
        paths
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RegistryFile;

    #[test]
    fn example_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        let config = GatewayConfig::load(&dir.join("gateway.toml")).unwrap();
        assert_eq!(config.listen.port(), 7000);
        assert!(config.registry.ends_with("registry.toml"));
        assert!(config.registry.is_absolute() && config.tls.ca.is_absolute());
        assert_eq!(config.console.node_metrics.len(), 3);
        // Loading is idempotent: the same file gives the same paths.
        let again = GatewayConfig::load(&dir.join("gateway.toml")).unwrap();
        assert_eq!(
            (again.registry, again.tls.ca, again.tls.cert, again.tls.key),
            (
                config.registry,
                config.tls.ca,
                config.tls.cert,
                config.tls.key
            )
        );
        let registry: RegistryFile = config::load(&dir.join("registry.toml")).unwrap();
        assert_eq!(registry.regions.len(), 3);
    }

    #[test]
    fn console_node_urls_must_be_http() {
        let base = "listen = \"127.0.0.1:7000\"\nregistry = \"r.toml\"\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n";
        let bad: GatewayConfig = config::parse(
            &format!("{base}[console.node_metrics]\n\"440000\" = \"ftp://x/metrics\"\n"),
            Path::new("g.toml"),
        )
        .unwrap();
        let err = bad.validate(Path::new("g.toml")).unwrap_err().to_string();
        assert!(err.contains("console.node_metrics.440000"), "{err}");
        let fast: GatewayConfig = config::parse(
            &format!("{base}[console]\nsample_every = \"1ms\"\n"),
            Path::new("g.toml"),
        )
        .unwrap();
        assert!(fast.validate(Path::new("g.toml")).is_err());
    }

    #[test]
    fn cache_byte_budgets_have_defaults_and_a_floor() {
        let base = "listen = \"127.0.0.1:7000\"\nregistry = \"r.toml\"\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n";
        let origin = Path::new("g.toml");
        // A config from before the byte budgets (entry counts only) loads as it was.
        let old: GatewayConfig = config::parse(
            &format!("{base}[recognition]\nidentity_entries = 1000\nlicense_entries = 2000\n"),
            origin,
        )
        .unwrap();
        old.validate(origin).unwrap();
        let r = &old.recognition;
        assert_eq!((r.identity_entries, r.license_entries), (1000, 2000));
        assert_eq!(
            (r.identity_cache_bytes, r.license_cache_bytes),
            (8 << 20, 16 << 20)
        );
        let set: GatewayConfig = config::parse(
            &format!("{base}[recognition]\nidentity_cache_bytes = 2097152\nlicense_cache_bytes = 4194304\n"),
            origin,
        )
        .unwrap();
        set.validate(origin).unwrap();
        assert_eq!(set.recognition.license_cache_bytes, 4 << 20);
        let tiny: GatewayConfig = config::parse(
            &format!("{base}[recognition]\nlicense_cache_bytes = 1000\n"),
            origin,
        )
        .unwrap();
        let err = tiny.validate(origin).unwrap_err().to_string();
        assert!(err.contains("license_cache_bytes"), "{err}");
    }

    #[test]
    fn errors_name_the_field() {
        let err = config::parse::<GatewayConfig>(
            "listen = \"127.0.0.1:7000\"\nregistry = \"r.toml\"\nlisen = 1\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n",
            Path::new("gw.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("lisen"), "{err}");
        let err = config::parse::<GatewayConfig>(
            "listen = \"not an address\"\nregistry = \"r.toml\"\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n",
            Path::new("gw.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("listen"), "{err}");
        let err = config::parse::<GatewayConfig>(
            "listen = \"127.0.0.1:7000\"\nregistry = \"r.toml\"\nhandshake_timeout = \"soon\"\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n",
            Path::new("gw.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("handshake_timeout"), "{err}");
    }

    #[test]
    fn the_revocation_log_is_optional_and_its_section_is_checked() {
        let base = "listen = \"127.0.0.1:7000\"\nregistry = \"r.toml\"\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n";
        let origin = Path::new("/etc/tongban/gw.toml");
        let without: GatewayConfig = config::parse(base, origin).unwrap();
        assert!(without.revocation_log.is_none());
        let text = format!(
            "{base}[revocation_log]\nreplica = \"gw-0\"\n[revocation_log.database]\n\
             url = \"postgres://gw@db:5432/tongban\"\npassword_file = \"db-password\"\n\
             [revocation_log.database.tls]\nmode = \"verify-full\"\nca = \"db-ca.pem\"\n"
        );
        let mut with: GatewayConfig = config::parse(&text, origin).unwrap();
        with.validate(origin).unwrap();
        config::resolve_paths(&mut with, Path::new("/etc/tongban"));
        let log = with.revocation_log.clone().unwrap();
        assert_eq!(
            (log.poll_interval, log.max_staleness),
            (Duration::from_secs(1), Duration::from_secs(10))
        );
        assert_eq!(log.replica_name(), "gw-0");
        assert_eq!(
            log.database.password_file.as_deref(),
            Some(Path::new("/etc/tongban/db-password"))
        );
        assert_eq!(
            log.database.tls.ca.as_deref(),
            Some(Path::new("/etc/tongban/db-ca.pem"))
        );
        // Written back (as the kit writes configs), it reads the same.
        let written = serde_json::to_value(&with).unwrap();
        let again: GatewayConfig = serde_json::from_value(written).unwrap();
        assert_eq!(
            again.revocation_log.unwrap().database.url,
            "postgres://gw@db:5432/tongban"
        );
        for (extra, field) in [
            ("max_staleness = \"1s\"\n", "revocation_log.max_staleness"),
            ("poll_interval = \"1ms\"\n", "revocation_log.poll_interval"),
        ] {
            let bad: GatewayConfig = config::parse(
                &format!("{base}[revocation_log]\n{extra}[revocation_log.database]\nurl = \"postgres://db/t\"\n"),
                origin,
            )
            .unwrap();
            let err = bad.validate(origin).unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
        let err = config::parse::<GatewayConfig>(
            &format!("{base}[revocation_log]\npoll = \"1s\"\n[revocation_log.database]\nurl = \"postgres://db/t\"\n"),
            origin,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("poll"), "{err}");
    }

    #[test]
    fn handshake_limits_default_when_absent_and_are_read_from_limits() {
        let base = "listen = \"127.0.0.1:7000\"\nregistry = \"r.toml\"\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n";
        let old: GatewayConfig = config::parse(base, Path::new("gw.toml")).unwrap();
        let limits = old.handshake_limits();
        assert_eq!(
            (limits.max_pending, limits.max_pending_per_source),
            (256, 16)
        );
        assert_eq!(limits.client_hello_timeout, Duration::from_secs(2));
        let set: GatewayConfig = config::parse(
            &format!(
                "{base}[limits]\nmax_handshakes_per_source = 4\nclient_hello_timeout = \"500ms\"\n"
            ),
            Path::new("gw.toml"),
        )
        .unwrap();
        let limits = set.handshake_limits();
        assert_eq!(limits.max_pending_per_source, 4);
        assert_eq!(limits.client_hello_timeout, Duration::from_millis(500));
        let err = config::parse::<GatewayConfig>(
            &format!("{base}[limits]\nclient_hello_timeout = \"soon\"\n"),
            Path::new("gw.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("client_hello_timeout"), "{err}");
    }

    #[test]
    fn revocation_memory_must_outlast_every_cached_answer() {
        let base = "listen = \"127.0.0.1:7000\"\nregistry = \"r.toml\"\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n";
        let origin = Path::new("gw.toml");
        let default: GatewayConfig = config::parse(base, origin).unwrap();
        assert_eq!(
            default.recognition.revocations,
            RevocationSettings::default()
        );
        default.validate(origin).unwrap();
        let set: GatewayConfig = config::parse(
            &format!(
                "{base}[recognition]\nmax_ttl = \"10m\"\nholder_list_ttl = \"1m\"\n\
                 [recognition.grace]\nhousehold_register = \"1h\"\n\
                 [recognition.revocations]\nmemory = \"71m\"\nmax_per_issuer = 5\nper_second = 2\nburst = 3\n"
            ),
            origin,
        )
        .unwrap();
        set.validate(origin).unwrap();
        let r = &set.recognition.revocations;
        assert_eq!((r.max_per_issuer, r.per_second, r.burst), (5, 2, 3));
        // A minute short of 10m + 1h + 1m.
        let short: GatewayConfig = config::parse(
            &format!(
                "{base}[recognition]\nmax_ttl = \"10m\"\nholder_list_ttl = \"1m\"\n\
                 [recognition.grace]\nhousehold_register = \"1h\"\n\
                 [recognition.revocations]\nmemory = \"70m\"\n"
            ),
            origin,
        )
        .unwrap();
        let err = short.validate(origin).unwrap_err().to_string();
        assert!(err.contains("recognition.revocations.memory"), "{err}");
        assert!(err.contains("1h 11m"), "{err}");
        let zero: GatewayConfig = config::parse(
            &format!("{base}[recognition.revocations]\nper_second = 0\n"),
            origin,
        )
        .unwrap();
        assert!(zero.validate(origin).is_err());
    }
}
