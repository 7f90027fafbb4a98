//! `tongban-bench`: the same unary delivery call made directly to a node, through
//! Tongban's gateway and through two peers, nginx and HAProxy, as plain mTLS gRPC
//! routers, interleaved in one run, with latency from the client and CPU time per call
//! from the OS's accounting of each process. `--baseline-gateway` adds another gateway
//! binary under the same config, to compare before and after a change in one run.
//!
//! A telemetry-cost check runs the gateway with telemetry off, with its default (metrics
//! on), and with metrics plus traces exported over OTLP to a collector in this process,
//! interleaved; every call carries a `traceparent` as nodes send them, 1 % sampled.
//!
//! Every round's figures are kept: the table shows their median and range, and ratios
//! (gateway vs the best peer of each cell, gateway vs baseline) are taken round by round,
//! since rounds are interleaved, then summarized the same way (see `report`).
//!
//! Run with `scripts/bench` (builds release binaries first). Add a scenario by adding a
//! [`Target`] and a way to build its [`load::Caller`].

mod apt;
mod haproxy;
mod load;
mod lookups;
mod nginx;
mod procs;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use clap::Parser;
use prost::Message;
use tongban_gateway::{
    GatewayConfig,
    registry::{IssuerKeyEntry, RegionEntry, RegistryFile},
};
use tongban_node::{
    NodeConfig,
    config::{
        GatewayLink, IssuerConfig, ListenConfig, OutboxConfig, PlatformConfig, SigningKeyConfig,
    },
    platform::embedded::synthetic_residents,
};
use tongban_proto::{
    metadata,
    region::{RegionCode, RegionPrefix, RegionTable},
    v1::{Applicant, Application, DeliverApplicationRequest, MaterialRef, MaterialSource},
};
use tongban_runtime::{
    connector::{self, FederationConnector},
    identity::PeerIdentity,
    pki::{self, DevCa},
    tls::{self, ClientSettings, TlsFiles},
    traces::TelemetryConfig,
};

use crate::{load::Caller, procs::Proc};

/// Gateway vs direct vs nginx and HAProxy, one run, one table.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Measured seconds per cell and round.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Warm-up seconds before each measured window (not counted).
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Interleaved rounds per cell; the table shows the median over rounds and the
    /// spread, ratios are taken round by round.
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// Payload sizes in bytes (encoded request message).
    #[arg(long, value_delimiter = ',', default_value = "256,4096,65536")]
    payloads: Vec<usize>,
    /// Calls in flight.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    inflight: Vec<usize>,
    /// Targets to measure, of: direct, gateway, gateway-baseline, nginx1, nginx2,
    /// haproxy1, haproxy2 (default: all). Peers not named are not started.
    #[arg(long, value_delimiter = ',')]
    targets: Vec<String>,
    /// Another tongban-gateway binary (e.g. built before a change) to measure as target
    /// gateway-baseline, with the gateway's config on a port of its own, so before and
    /// after are compared in one run on the same machine state.
    #[arg(long, value_name = "PATH")]
    baseline_gateway: Option<PathBuf>,
    /// Skip nginx (no install, no nginx peer).
    #[arg(long)]
    no_nginx: bool,
    /// Skip HAProxy (no install, no HAProxy peer).
    #[arg(long)]
    no_haproxy: bool,
    /// Skip the route-scale and memory checks.
    #[arg(long)]
    no_scale: bool,
    /// Skip the telemetry-cost check (the gateway with telemetry off, and with metrics
    /// and 1 % of traces exported, against the default: metrics on, traces off).
    #[arg(long)]
    no_telemetry_cost: bool,
    /// Skip the lookup scenario (cached and uncached license lookups, the issuer direct).
    #[arg(long)]
    no_lookups: bool,
    /// Licenses seeded in the node's register for the lookup scenario: enough for the
    /// cache fill and every uncached lookup measured.
    #[arg(long, default_value_t = 200_000)]
    lookup_licenses: u32,
    /// Distinct licenses looked up before the gateway's RSS is read.
    #[arg(long, default_value_t = 100_000)]
    lookup_fill: usize,
    /// Working folder (certificates, configs, logs, databases).
    #[arg(long, default_value = "/tmp/tongban-bench")]
    dir: PathBuf,
}

impl Args {
    /// Whether `target` is to be measured (and so started).
    fn wants(&self, target: Target) -> bool {
        self.targets.is_empty() || self.targets.iter().any(|k| k == target.key())
    }

    /// Rejects unknown target keys and a baseline target without its binary, which would
    /// otherwise just leave rows out of the table.
    fn check(&self) -> anyhow::Result<()> {
        for key in &self.targets {
            if !Target::MEASURED.iter().any(|t| t.key() == key) {
                let known: Vec<&str> = Target::MEASURED.iter().map(|t| t.key()).collect();
                bail!("unknown target {key:?}; known: {}", known.join(", "));
            }
        }
        if self.baseline_gateway.is_none()
            && self
                .targets
                .iter()
                .any(|k| k == Target::GatewayBaseline.key())
        {
            bail!("target gateway-baseline needs --baseline-gateway <path>");
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Direct,
    Gateway,
    Gateway3212,
    GatewayBaseline,
    /// The gateway with `[telemetry] metrics = false` and no traces.
    GatewayQuiet,
    /// The gateway with metrics and 1 % of traces exported over OTLP.
    GatewayTraced,
    Nginx1,
    Nginx2,
    Haproxy1,
    Haproxy2,
}

impl Target {
    /// Targets of the main table, in its row order (the 3,212-route gateway is measured
    /// in the route-scale check only).
    const MEASURED: [Self; 7] = [
        Self::Direct,
        Self::Gateway,
        Self::GatewayBaseline,
        Self::Nginx1,
        Self::Nginx2,
        Self::Haproxy1,
        Self::Haproxy2,
    ];

    /// What the gateway is compared with: plain mTLS gRPC routers in front of the node.
    const PEERS: [Self; 4] = [Self::Nginx1, Self::Nginx2, Self::Haproxy1, Self::Haproxy2];

    fn key(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Gateway => "gateway",
            Self::Gateway3212 => "gateway3212",
            Self::GatewayBaseline => "gateway-baseline",
            Self::GatewayQuiet => "gateway-quiet",
            Self::GatewayTraced => "gateway-traced",
            Self::Nginx1 => "nginx1",
            Self::Nginx2 => "nginx2",
            Self::Haproxy1 => "haproxy1",
            Self::Haproxy2 => "haproxy2",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Gateway => "gateway",
            Self::Gateway3212 => "gateway (3212 routes)",
            Self::GatewayBaseline => "gateway (baseline)",
            Self::GatewayQuiet => "gateway, telemetry off",
            Self::GatewayTraced => "gateway, metrics + 1 % traces",
            Self::Nginx1 => "nginx 1 worker",
            Self::Nginx2 => "nginx 2 workers",
            Self::Haproxy1 => "haproxy 1 thread",
            Self::Haproxy2 => "haproxy 2 threads",
        }
    }
}

/// One target's measured window in one round.
struct Round {
    index: u32,
    calls: u64,
    elapsed: Duration,
    proxy_cpu_s: f64,
    node_cpu_s: f64,
}

impl Round {
    fn rps(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }
    fn per_call_us(&self, cpu_s: f64) -> f64 {
        if self.calls == 0 {
            return f64::NAN;
        }
        cpu_s * 1e6 / self.calls as f64
    }
    fn proxy_us(&self) -> f64 {
        self.per_call_us(self.proxy_cpu_s)
    }
    fn node_us(&self) -> f64 {
        self.per_call_us(self.node_cpu_s)
    }
    fn total_us(&self) -> f64 {
        self.per_call_us(self.proxy_cpu_s + self.node_cpu_s)
    }
}

/// One target at one payload and concurrency, over all rounds.
struct Cell {
    target: Target,
    payload: usize,
    inflight: usize,
    /// Calls, errors and latency of all rounds together.
    stats: load::RunStats,
    /// Throughput and CPU round by round: rounds are interleaved, so a round of one
    /// target compares best with the same round of another, the machine's state being
    /// closest then.
    rounds: Vec<Round>,
    upstream_conns: usize,
}

impl Cell {
    fn p(&self, q: f64) -> u64 {
        self.stats.latency_us.value_at_quantile(q)
    }
    fn round(&self, index: u32) -> Option<&Round> {
        self.rounds.iter().find(|r| r.index == index)
    }
}

struct Running {
    node: Proc,
    node_port: u16,
    gateway: Proc,
    gateway_port: u16,
    gateway3212: Option<(Proc, u16)>,
    baseline: Option<(Proc, u16)>,
    /// The telemetry-cost gateways (quiet, traced) and the collector the traced one
    /// exports to.
    quiet: Option<(Proc, u16)>,
    traced: Option<(Proc, u16)>,
    collector: Option<tongban_cli::otlp_collector::OtlpCollector>,
    /// nginx and HAProxy, each configuration its own process and port.
    peers: Vec<(Target, Proc, u16)>,
    /// The gateway's admin port (metrics).
    gateway_admin_port: Option<u16>,
    /// What the lookup scenario seeded, if it runs.
    lookups: Option<lookups::Setup>,
}

fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().context("binary folder")?.to_owned())
}

fn write_toml(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    std::fs::write(path, toml::to_string_pretty(value)?)?;
    Ok(())
}

fn files(pki: &Path, identity: &PeerIdentity) -> TlsFiles {
    let stem = pki::file_stem(identity);
    TlsFiles {
        ca: pki.join("ca.pem"),
        cert: pki.join(format!("{stem}.pem")),
        key: pki.join(format!("{stem}.key")),
        crl: None,
    }
}

/// Writes `<name>-registry.toml`: every prefix routed to the node. Returns the file's
/// name, relative to `dir` like the configs that point to it.
fn write_registry(
    dir: &Path,
    name: &str,
    node_port: u16,
    prefixes: &[String],
    issuer_key: Option<&pki::IssuerKey>,
) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now();
    let registry = RegistryFile {
        regions: prefixes
            .iter()
            .map(|p| RegionEntry {
                prefix: p.clone(),
                endpoints: vec![format!("https://127.0.0.1:{node_port}")],
                // Every prefix is served by the one node (as region 44), except those of
                // 31: the load's caller must be a registered member owning its origin
                // (the gateway admits only members), and nothing is sent to 31.
                identity: Some(
                    if p.starts_with("31") {
                        "spiffe://tongban/region/31"
                    } else {
                        "spiffe://tongban/region/44"
                    }
                    .into(),
                ),
                // The node signs as region 44, whose licenses route by the prefix 44.
                issuer_keys: issuer_key
                    .filter(|_| p == "44")
                    .map(|k| IssuerKeyEntry {
                        id: k.key_id.clone(),
                        ed25519_public_key: Some(k.public_key_hex()),
                        ed25519_public_key_file: None,
                        not_before: now - Duration::from_secs(3600),
                        not_after: now + Duration::from_secs(86400),
                    })
                    .into_iter()
                    .collect(),
            })
            .collect(),
    };
    let registry_file = format!("{name}-registry.toml");
    write_toml(&dir.join(&registry_file), &registry)?;
    Ok(registry_file)
}

/// Starts `binary` as gateway `name` with the bench's gateway config on a free port,
/// routing by `registry_file`.
fn spawn_gateway(
    dir: &Path,
    name: &str,
    binary: &Path,
    registry_file: &str,
    admin_port: Option<u16>,
    telemetry: TelemetryConfig,
) -> anyhow::Result<(Proc, u16)> {
    let port = procs::free_port()?;
    let gateway_log = std::env::var("TONGBAN_BENCH_GATEWAY_LOG").unwrap_or_else(|_| "info".into());
    let config = GatewayConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        admin_listen: admin_port.map(|p| SocketAddr::from(([127, 0, 0, 1], p))),
        // Paths relative to the config's folder, so the folder can be rerun by hand.
        tls: files(Path::new("pki"), &PeerIdentity::Gateway),
        registry: registry_file.into(),
        catalog: None,
        upstream: ClientSettings::default(),
        handshake_timeout: Duration::from_secs(5),
        worker_threads: 1,
        recognition: Default::default(),
        telemetry,
        console: Default::default(),
        limits: Default::default(),
        // A trail per gateway (a trail has one writer, and several run at once); the
        // baseline keeps the default (`gateway-audit.log`), left out of the written
        // config so an older binary still reads it.
        audit: if name == "gateway-baseline" {
            tongban_gateway::config::default_trail()
        } else {
            tongban_runtime::audit_chain::TrailSettings::at(&format!("{name}-audit.log"))
        },
    };
    let path = dir.join(format!("{name}.toml"));
    write_toml(&path, &config)?;
    let config_arg = path.to_str().context("utf-8 path")?;
    // TONGBAN_BENCH_GATEWAY_WRAPPER runs the gateway under a tool, for instruction counts
    // that do not depend on the machine's noise, e.g.
    // "valgrind --tool=callgrind --callgrind-out-file=/tmp/gw.callgrind".
    let wrapper = std::env::var("TONGBAN_BENCH_GATEWAY_WRAPPER").unwrap_or_default();
    let mut command: Vec<&str> = wrapper.split_whitespace().collect();
    command.extend([
        binary.to_str().context("utf-8 path")?,
        "--config",
        config_arg,
    ]);
    let proc = Proc::spawn(
        name,
        Path::new(command[0]),
        &command[1..],
        // The audit trail stays on: it is part of what the gateway does per call.
        &[("RUST_LOG", gateway_log.as_str())],
        &dir.join(format!("{name}.log")),
    )?;
    Ok((proc, port))
}

async fn start(args: &Args, dir: &Path) -> anyhow::Result<Running> {
    // Peers are found (or installed) before anything starts, so a failed install leaves
    // no node or gateway running.
    let nginx_configs: Vec<(Target, u32)> = [(Target::Nginx1, 1), (Target::Nginx2, 2)]
        .into_iter()
        .filter(|(t, _)| !args.no_nginx && args.wants(*t))
        .collect();
    let haproxy_configs: Vec<(Target, u32)> = [(Target::Haproxy1, 1), (Target::Haproxy2, 2)]
        .into_iter()
        .filter(|(t, _)| !args.no_haproxy && args.wants(*t))
        .collect();
    let nginx_bin = if nginx_configs.is_empty() {
        None
    } else {
        Some(nginx::ensure_installed()?)
    };
    let haproxy_bin = if haproxy_configs.is_empty() {
        None
    } else {
        Some(haproxy::ensure_installed()?)
    };

    let pki_dir = dir.join("pki");
    std::fs::create_dir_all(&pki_dir)?;
    let ca = DevCa::generate("bench CA")?;
    ca.write(&pki_dir)?;
    let node_id = PeerIdentity::Region(RegionPrefix::parse("44")?);
    let client_id = PeerIdentity::Region(RegionPrefix::parse("31")?);
    for id in [&PeerIdentity::Gateway, &node_id, &client_id] {
        let leaf = ca.issue(id, Duration::from_secs(86400))?;
        pki::write_leaf(&pki_dir, id, &leaf)?;
    }

    let lookups = if args.no_lookups {
        None
    } else {
        eprintln!(
            "seeding {} licenses for the lookup scenario ...",
            args.lookup_licenses
        );
        Some(lookups::seed(dir, &pki_dir, args.lookup_licenses).await?)
    };
    let node_port = procs::free_port()?;
    let portal_port = procs::free_port()?;
    let node_config = NodeConfig {
        region: RegionCode::parse("440000")?,
        listen: ListenConfig {
            federation: SocketAddr::from(([127, 0, 0, 1], node_port)),
            portal: SocketAddr::from(([127, 0, 0, 1], portal_port)),
            admin: None,
        },
        tls: files(Path::new("pki"), &node_id),
        gateway: GatewayLink {
            endpoints: vec!["https://127.0.0.1:9".into()],
            server_name: None,
            client: ClientSettings::default(),
        },
        store: "node.db".into(),
        audit: tongban_runtime::audit_chain::TrailSettings::at("node-audit.log"),
        platform: PlatformConfig::Embedded {
            database: "platform.db".into(),
            seed_residents: 0,
            review_step: Duration::from_secs(3600),
        },
        outbox: OutboxConfig::default(),
        handshake_timeout: Duration::from_secs(5),
        issuer: IssuerConfig {
            keys: lookups
                .iter()
                .map(|l| SigningKeyConfig {
                    id: l.key.key_id.clone(),
                    file: Path::new("pki").join(l.key_file.file_name().unwrap_or_default()),
                    not_before: None,
                })
                .collect(),
            assertion_validity: None,
        },
        recognition: Default::default(),
        telemetry: Default::default(),
    };
    let node_path = dir.join("node.toml");
    write_toml(&node_path, &node_config)?;
    let node = Proc::spawn(
        "node",
        &bin_dir()?.join("tongban-node"),
        &["--config", node_path.to_str().context("utf-8 path")?],
        &[("RUST_LOG", "warn")],
        &dir.join("node.log"),
    )?;

    let table = RegionTable::embedded();
    let provinces: Vec<String> = table
        .provinces()
        .map(|d| d.code.significant_prefix().to_owned())
        .collect();
    let gateway_bin = bin_dir()?.join("tongban-gateway");
    let issuer_key = lookups.as_ref().map(|l| &l.key);
    let registry = write_registry(dir, "gateway", node_port, &provinces, issuer_key)?;
    let gateway_admin_port = procs::free_port()?;
    let (gateway, gateway_port) = spawn_gateway(
        dir,
        "gateway",
        &gateway_bin,
        &registry,
        Some(gateway_admin_port),
        TelemetryConfig::default(),
    )?;
    let gateway3212 = if args.no_scale {
        None
    } else {
        let all: Vec<String> = table.iter().map(|d| d.code.as_str().to_owned()).collect();
        let registry3212 = write_registry(dir, "gateway-3212", node_port, &all, issuer_key)?;
        Some(spawn_gateway(
            dir,
            "gateway-3212",
            &gateway_bin,
            &registry3212,
            None,
            TelemetryConfig::default(),
        )?)
    };
    // The same config and registry as the gateway under test: only the binary differs.
    let baseline = match &args.baseline_gateway {
        Some(bin) if args.wants(Target::GatewayBaseline) => {
            let bin = std::fs::canonicalize(bin)
                .with_context(|| format!("baseline gateway {}", bin.display()))?;
            eprintln!("baseline gateway: {}", bin.display());
            let name = Target::GatewayBaseline.key();
            // Its own registry, without issuer keys, which an older binary may not know.
            let registry = write_registry(dir, name, node_port, &provinces, None)?;
            Some(spawn_gateway(
                dir,
                name,
                &bin,
                &registry,
                None,
                TelemetryConfig::default(),
            )?)
        }
        _ => None,
    };
    // The telemetry-cost gateways: the same registry as the gateway under test.
    let (quiet, traced, collector) = if args.no_telemetry_cost {
        (None, None, None)
    } else {
        let quiet = spawn_gateway(
            dir,
            Target::GatewayQuiet.key(),
            &gateway_bin,
            &registry,
            None,
            TelemetryConfig {
                metrics: Some(false),
                ..TelemetryConfig::default()
            },
        )?;
        let collector = tongban_cli::otlp_collector::OtlpCollector::start().await?;
        let traced = spawn_gateway(
            dir,
            Target::GatewayTraced.key(),
            &gateway_bin,
            &registry,
            None,
            TelemetryConfig {
                otlp_endpoint: Some(collector.endpoint()),
                sample_ratio: Some(0.01),
                ..TelemetryConfig::default()
            },
        )?;
        (Some(quiet), Some(traced), Some(collector))
    };

    let mut peers = Vec::new();
    if let Some(bin) = nginx_bin {
        eprintln!("peer: {}", nginx::version(&bin));
        for (target, workers) in nginx_configs {
            let port = procs::free_port()?;
            let prefix = dir.join(format!("nginx-{workers}"));
            let gw = files(&pki_dir, &PeerIdentity::Gateway);
            let conf = nginx::write_config(&nginx::NginxSetup {
                prefix: &prefix,
                workers,
                listen_port: port,
                upstream_port: node_port,
                upstream_name: &node_id.dns_name(),
                ca: &gw.ca,
                cert: &gw.cert,
                key: &gw.key,
            })?;
            let p = Proc::spawn(
                target.label(),
                Path::new(&bin),
                &[
                    "-p",
                    prefix.to_str().context("utf-8")?,
                    "-c",
                    conf.to_str().context("utf-8")?,
                ],
                &[],
                &prefix.join("stdout.log"),
            )?;
            peers.push((target, p, port));
        }
    }
    if let Some(bin) = haproxy_bin {
        eprintln!("peer: {}", haproxy::version(&bin));
        for (target, threads) in haproxy_configs {
            let port = procs::free_port()?;
            let conf_dir = dir.join(format!("haproxy-{threads}"));
            let gw = files(&pki_dir, &PeerIdentity::Gateway);
            let conf = haproxy::write_config(&haproxy::HaproxySetup {
                dir: &conf_dir,
                threads,
                listen_port: port,
                upstream_port: node_port,
                upstream_name: &node_id.dns_name(),
                ca: &gw.ca,
                cert: &gw.cert,
                key: &gw.key,
            })?;
            let argv = haproxy::args(&conf)?;
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let p = Proc::spawn(
                target.label(),
                Path::new(&bin),
                &argv,
                &[],
                &conf_dir.join("stdout.log"),
            )?;
            peers.push((target, p, port));
        }
    }

    procs::wait_listening(SocketAddr::from(([127, 0, 0, 1], node_port)), "node").await?;
    procs::wait_listening(SocketAddr::from(([127, 0, 0, 1], gateway_port)), "gateway").await?;
    if let Some((_, port)) = &gateway3212 {
        procs::wait_listening(
            SocketAddr::from(([127, 0, 0, 1], *port)),
            "gateway (3212 routes)",
        )
        .await?;
    }
    for (target, gateway) in [
        (Target::GatewayBaseline, &baseline),
        (Target::GatewayQuiet, &quiet),
        (Target::GatewayTraced, &traced),
    ] {
        if let Some((_, port)) = gateway {
            procs::wait_listening(SocketAddr::from(([127, 0, 0, 1], *port)), target.label())
                .await?;
        }
    }
    for (t, _, port) in &peers {
        procs::wait_listening(SocketAddr::from(([127, 0, 0, 1], *port)), t.label()).await?;
    }
    Ok(Running {
        node,
        node_port,
        gateway,
        gateway_port,
        gateway3212,
        baseline,
        quiet,
        traced,
        collector,
        peers,
        gateway_admin_port: Some(gateway_admin_port),
        lookups,
    })
}

/// A valid application of a synthetic Guangdong resident, filed in Shanghai.
fn application(case_number: &str) -> anyhow::Result<Application> {
    let table = RegionTable::embedded();
    let resident = synthetic_residents(table, &RegionPrefix::parse("44")?, 1)
        .into_iter()
        .next()
        .context("a synthetic resident")?;
    let form = [
        ("treatment_region", "310115"),
        ("hospital_name", "复旦大学附属中山医院"),
        ("start_date", "2026-12-01"),
        ("reason", "异地长期居住"),
        ("contact_phone", "13800138000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    Ok(Application {
        case_number: case_number.into(),
        one_thing_id: "medical-treatment-registration".into(),
        // The node judges a delivery by the catalog version it names: the built-in one.
        catalog_version: tongban_proto::catalog::Catalog::embedded().version,
        origin_region: "310000".into(),
        target_region: "440305".into(),
        mode: 1,
        applicant: Some(Applicant {
            id_number: resident.id.as_str().into(),
            name: resident.name,
            phone: String::new(),
        }),
        form,
        ..Application::default()
    })
}

/// The encoded request, padded with an uploaded-material reference to `size` bytes.
fn payload(base: &Application, size: usize) -> bytes::Bytes {
    let mut app = base.clone();
    let len = |a: &Application| {
        DeliverApplicationRequest {
            application: Some(a.clone()),
        }
        .encoded_len()
    };
    let mut pad = size.saturating_sub(len(&app) + 16);
    loop {
        app.materials = vec![MaterialRef {
            material_id: "padding".into(),
            source: MaterialSource::Upload as i32,
            reference: "x".repeat(pad),
        }];
        let l = len(&app);
        if l <= size || pad == 0 {
            break;
        }
        pad = pad.saturating_sub(l - size);
    }
    DeliverApplicationRequest {
        application: Some(app),
    }
    .encode_to_vec()
    .into()
}

async fn channel(
    pki: &Path,
    client: &PeerIdentity,
    port: u16,
    server: &PeerIdentity,
) -> anyhow::Result<tonic::transport::Channel> {
    let connector = FederationConnector::from_files(&files(pki, client), server.clone())?;
    Ok(connector::endpoint(
        &format!("https://127.0.0.1:{port}"),
        &ClientSettings::default(),
    )?
    .connect_with_connector(connector)
    .await?)
}

/// Idempotency key of the calls before [`primed`] gives each payload its own.
const KEY: &str = "bench-replay-key";

/// Every call carries its own `traceparent`, as nodes send them, and one in this many is
/// sampled: the traced gateway records 1 % of calls, as with portals sampling 1 %.
const SAMPLED_ONE_IN: u64 = 100;

async fn callers(run: &Running, pki: &Path) -> anyhow::Result<Vec<(Target, Caller)>> {
    let node_id = PeerIdentity::Region(RegionPrefix::parse("44")?);
    let client_id = PeerIdentity::Region(RegionPrefix::parse("31")?);
    let node_path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/tongban.federation.v1.Node/DeliverApplication",
    );
    let gw_path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/tongban.federation.v1.Gateway/DeliverApplication",
    );
    // Direct and peer callers stand in for the gateway (they present its certificate or
    // the peer does) and state the verified origin the gateway would have added.
    let as_gateway_meta = vec![
        (metadata::VERIFIED_ORIGIN, "31".to_owned()),
        (metadata::TARGET_REGION, "440305".to_owned()),
        (
            metadata::ONE_THING,
            "medical-treatment-registration".to_owned(),
        ),
        (metadata::IDEMPOTENCY_KEY, KEY.to_owned()),
    ];
    let node_meta = vec![
        (metadata::TARGET_REGION, "440305".to_owned()),
        (metadata::ORIGIN_REGION, "310000".to_owned()),
        (
            metadata::ONE_THING,
            "medical-treatment-registration".to_owned(),
        ),
        (metadata::IDEMPOTENCY_KEY, KEY.to_owned()),
    ];
    let mut out = vec![
        (
            Target::Direct,
            Caller {
                channel: channel(pki, &PeerIdentity::Gateway, run.node_port, &node_id).await?,
                path: node_path.clone(),
                metadata: as_gateway_meta.clone(),
                sampled_one_in: Some(SAMPLED_ONE_IN),
            },
        ),
        (
            Target::Gateway,
            Caller {
                channel: channel(pki, &client_id, run.gateway_port, &PeerIdentity::Gateway).await?,
                path: gw_path.clone(),
                metadata: node_meta.clone(),
                sampled_one_in: Some(SAMPLED_ONE_IN),
            },
        ),
    ];
    for (target, gateway) in [
        (Target::Gateway3212, &run.gateway3212),
        (Target::GatewayBaseline, &run.baseline),
        (Target::GatewayQuiet, &run.quiet),
        (Target::GatewayTraced, &run.traced),
    ] {
        if let Some((_, port)) = gateway {
            out.push((
                target,
                Caller {
                    channel: channel(pki, &client_id, *port, &PeerIdentity::Gateway).await?,
                    path: gw_path.clone(),
                    metadata: node_meta.clone(),
                    sampled_one_in: Some(SAMPLED_ONE_IN),
                },
            ));
        }
    }
    for (target, _, port) in &run.peers {
        out.push((
            *target,
            Caller {
                channel: channel(pki, &client_id, *port, &PeerIdentity::Gateway).await?,
                path: node_path.clone(),
                metadata: as_gateway_meta.clone(),
                sampled_one_in: Some(SAMPLED_ONE_IN),
            },
        ));
    }
    Ok(out)
}

fn proxy_of(run: &Running, target: Target) -> Option<&Proc> {
    match target {
        Target::Direct => None,
        Target::Gateway => Some(&run.gateway),
        Target::Gateway3212 => run.gateway3212.as_ref().map(|(p, _)| p),
        Target::GatewayBaseline => run.baseline.as_ref().map(|(p, _)| p),
        Target::GatewayQuiet => run.quiet.as_ref().map(|(p, _)| p),
        Target::GatewayTraced => run.traced.as_ref().map(|(p, _)| p),
        Target::Nginx1 | Target::Nginx2 | Target::Haproxy1 | Target::Haproxy2 => run
            .peers
            .iter()
            .find(|(t, _, _)| *t == target)
            .map(|(_, p, _)| p),
    }
}

/// Which measured window: payload size, calls in flight, round.
#[derive(Clone, Copy)]
struct Slot {
    payload: usize,
    inflight: usize,
    round: u32,
}

/// One measured window of one caller: its calls, and the CPU the proxy (if any) and
/// the node spent on them.
struct Measured {
    stats: load::RunStats,
    proxy_cpu_s: f64,
    node_cpu_s: f64,
    upstream_conns: usize,
}

/// Warms up, then measures `inflight` calls of `caller` for `seconds`.
async fn measure_window(
    run: &Running,
    proxy: Option<&Proc>,
    caller: &Caller,
    payloads: load::Payloads,
    inflight: usize,
    warmup: f64,
    seconds: f64,
) -> Measured {
    let _ = load::run(
        caller,
        payloads.clone(),
        inflight,
        Duration::from_secs_f64(warmup),
    )
    .await;
    let p0 = proxy.map_or(0.0, Proc::cpu_seconds);
    let n0 = run.node.cpu_seconds();
    let node_port = run.node_port;
    // Whose connections to the node count: the proxy's, or ours when calling directly.
    let owners = proxy.map_or_else(|| vec![std::process::id()], Proc::tree);
    let sampler = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        procs::connections_to(node_port, &owners)
    });
    let stats = load::run(caller, payloads, inflight, Duration::from_secs_f64(seconds)).await;
    Measured {
        stats,
        proxy_cpu_s: proxy.map_or(0.0, Proc::cpu_seconds) - p0,
        node_cpu_s: run.node.cpu_seconds() - n0,
        upstream_conns: sampler.await.unwrap_or(0),
    }
}

async fn measure(
    run: &Running,
    target: Target,
    caller: &Caller,
    body: &bytes::Bytes,
    args: &Args,
    slot: Slot,
) -> Cell {
    let Slot {
        payload,
        inflight,
        round,
    } = slot;
    let m = measure_window(
        run,
        proxy_of(run, target),
        caller,
        body.clone().into(),
        inflight,
        args.warmup,
        args.seconds,
    )
    .await;
    Cell {
        target,
        payload,
        inflight,
        rounds: vec![Round {
            index: round,
            calls: m.stats.calls,
            elapsed: m.stats.elapsed,
            proxy_cpu_s: m.proxy_cpu_s,
            node_cpu_s: m.node_cpu_s,
        }],
        stats: m.stats,
        upstream_conns: m.upstream_conns,
    }
}

fn merge(into: &mut Cell, other: Cell) {
    into.stats.calls += other.stats.calls;
    into.stats.errors += other.stats.errors;
    into.stats.elapsed += other.stats.elapsed;
    let _ = into.stats.latency_us.add(&other.stats.latency_us);
    if into.stats.first_error.is_none() {
        into.stats.first_error = other.stats.first_error;
    }
    into.rounds.extend(other.rounds);
    into.upstream_conns = into.upstream_conns.max(other.upstream_conns);
}

fn size_label(bytes: usize) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.check()?;
    tls::install_crypto_provider();
    // Wiped only if an earlier benchmark made it (or it is empty).
    let dir = tongban_runtime::workdir::prepare(&args.dir, "tongban-bench")?;
    let mut run = start(&args, &dir).await?;
    let result = bench(&args, &dir, &mut run).await;
    run.gateway.stop();
    run.node.stop();
    for (p, _) in run
        .gateway3212
        .into_iter()
        .chain(run.baseline)
        .chain(run.quiet)
        .chain(run.traced)
    {
        p.stop();
    }
    for (_, p, _) in run.peers {
        p.stop();
    }
    result
}

/// One real delivery per payload size creates a case; every measured call then replays
/// that case under the same idempotency key with identical bytes, so the node answers
/// from its idempotency record and the proxy's cost stands out. Returns the callers
/// using that key and the encoded request.
async fn primed(
    callers: &[(Target, Caller)],
    n: usize,
    size: usize,
) -> anyhow::Result<(Vec<(Target, Caller)>, bytes::Bytes)> {
    let key = format!("bench-replay-{n}-{size}");
    let case = format!("310000-20261127-{:08}", n + 1);
    let body = payload(&application(&case)?, size);
    let callers: Vec<(Target, Caller)> = callers
        .iter()
        .map(|(t, c)| {
            let mut c = c.clone();
            for (k, v) in &mut c.metadata {
                if *k == metadata::IDEMPOTENCY_KEY {
                    *v = key.clone();
                }
            }
            (*t, c)
        })
        .collect();
    let (_, direct) = callers
        .iter()
        .find(|(t, _)| *t == Target::Direct)
        .context("the direct caller")?;
    if let Err(e) = load::once(direct, body.clone()).await {
        bail!("priming delivery of {size} B failed: {e}");
    }
    Ok((callers, body))
}

/// Gateways that do the same work per call, compared at 256 B and 64 in flight over
/// twice the rounds (what differs is mostly the machine's noise, which more
/// alternations average out), the order rotated every round.
async fn interleaved(
    run: &Running,
    (callers, body): &(Vec<(Target, Caller)>, bytes::Bytes),
    targets: &[Target],
    args: &Args,
) -> Vec<Cell> {
    let mut cells: Vec<Cell> = Vec::new();
    for round in 0..(args.rounds * 2).max(4) {
        for i in 0..targets.len() {
            let target = targets[(i + round as usize) % targets.len()];
            let Some((_, caller)) = callers.iter().find(|(t, _)| *t == target) else {
                continue;
            };
            let slot = Slot {
                payload: 256,
                inflight: 64,
                round,
            };
            let cell = measure(run, target, caller, body, args, slot).await;
            match cells.iter_mut().find(|c| c.target == target) {
                Some(existing) => merge(existing, cell),
                None => cells.push(cell),
            }
        }
    }
    cells
}

async fn bench(args: &Args, dir: &Path, run: &mut Running) -> anyhow::Result<()> {
    let pki = dir.join("pki");
    let callers = callers(run, &pki).await?;
    let gateways = |run: &Running| {
        [
            Some(&run.gateway),
            run.gateway3212.as_ref().map(|(p, _)| p),
            run.baseline.as_ref().map(|(p, _)| p),
        ]
        .into_iter()
        .flatten()
        .map(|p| (p.name.clone(), p.rss_kib()))
        .collect::<Vec<_>>()
    };
    let idle_rss = gateways(run)
        .into_iter()
        .map(|(name, (now, _))| (name, now))
        .collect::<Vec<_>>();

    let mut cells: Vec<Cell> = Vec::new();
    let main_targets: Vec<Target> = Target::MEASURED
        .into_iter()
        .filter(|t| args.wants(*t))
        .filter(|t| callers.iter().any(|(c, _)| c == t))
        .collect();
    for (n, &size) in args.payloads.iter().enumerate() {
        let (callers, body) = primed(&callers, n, size).await?;
        for &inflight in &args.inflight {
            eprintln!("measuring {} at {inflight} in flight ...", size_label(size));
            for round in 0..args.rounds {
                // Rotate the order each round so no target always runs first or last.
                let n = main_targets.len();
                for i in 0..n {
                    let target = main_targets[(i + round as usize) % n];
                    let Some((_, caller)) = callers.iter().find(|(t, _)| *t == target) else {
                        continue;
                    };
                    let slot = Slot {
                        payload: size,
                        inflight,
                        round,
                    };
                    let cell = measure(run, target, caller, &body, args, slot).await;
                    match cells
                        .iter_mut()
                        .find(|c| c.target == target && c.payload == size && c.inflight == inflight)
                    {
                        Some(existing) => merge(existing, cell),
                        None => cells.push(cell),
                    }
                }
                run.node.check_alive()?;
            }
        }
    }

    // Route scale: 34 vs 3,212 registered routes, interleaved.
    let mut scale: Vec<Cell> = Vec::new();
    if run.gateway3212.is_some() {
        let primed = primed(&callers, args.payloads.len(), 256).await?;
        eprintln!("measuring route scale ...");
        scale = interleaved(run, &primed, &[Target::Gateway, Target::Gateway3212], args).await;
    }
    // Telemetry cost: off, the default (metrics), metrics + 1 % traces, interleaved.
    let mut telemetry: Vec<Cell> = Vec::new();
    if run.quiet.is_some() {
        let primed = primed(&callers, args.payloads.len() + 2, 256).await?;
        eprintln!("measuring telemetry cost ...");
        let targets = [Target::GatewayQuiet, Target::Gateway, Target::GatewayTraced];
        telemetry = interleaved(run, &primed, &targets, args).await;
    }
    let spans_exported = run.collector.as_ref().map(|c| c.spans().len());
    let load_rss = gateways(run)
        .into_iter()
        .map(|(name, (_, peak))| (name, peak))
        .collect::<Vec<_>>();

    report::print(
        args,
        &cells,
        &scale,
        &report::TelemetryCost {
            cells: &telemetry,
            spans_exported,
        },
        &idle_rss,
        &load_rss,
    );

    if let Some(setup) = &run.lookups {
        let (callers, body) = primed(&callers, args.payloads.len() + 1, 256).await?;
        let routed = callers
            .iter()
            .find(|(t, _)| *t == Target::Gateway)
            .map(|(_, c)| c.clone())
            .context("the gateway's caller")?;
        let options = lookups::Options {
            rounds: args.rounds,
            seconds: args.seconds,
            warmup: args.warmup,
            inflight: args.inflight.clone(),
            fill: args.lookup_fill,
        };
        lookups::run(run, &pki, setup, (routed, body), &options).await?;
    }
    Ok(())
}

mod report;
