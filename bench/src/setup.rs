//! What the benchmark runs: the PKI, a node (as region 44), the gateways under test (34
//! and 3,212 routes, a baseline binary, telemetry off and traced), nginx and HAProxy in
//! front of the same node, each its own process on its own port, configured with the
//! kit's config writers.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use anyhow::Context;
use tongban_gateway::registry::{RegionEntry, RegistryFile};
use tongban_kit::{
    OtlpCollector,
    config::{
        gateway, node,
        pki::{Pki, tls_files},
    },
};
use tongban_node::config::{ListenConfig, SigningKeyConfig};
use tongban_proto::rules::region::{RegionCode, RegionPrefix, RegionTable};
use tongban_runtime::{
    audit::trail::TrailSettings, observability::traces::TelemetryConfig,
    trust::identity::PeerIdentity,
};

use crate::{
    args::Args, haproxy, lookups::seed as lookup_seed, nginx, platform::setup as platform_setup,
    procs, procs::Proc, target::Target,
};

/// The tool named in the configs' headers.
const WRITER: &str = "tongban-bench";

/// Everything started, and where it listens.
pub struct Running {
    pub node: Proc,
    pub node_port: u16,
    pub gateway: Proc,
    pub gateway_port: u16,
    pub gateway3212: Option<(Proc, u16)>,
    pub baseline: Option<(Proc, u16)>,
    /// The telemetry-cost gateways (quiet, traced) and the collector the traced one
    /// exports to.
    pub quiet: Option<(Proc, u16)>,
    pub traced: Option<(Proc, u16)>,
    pub collector: Option<OtlpCollector>,
    /// nginx and HAProxy, each configuration its own process and port.
    pub peers: Vec<(Target, Proc, u16)>,
    /// The gateway's admin port (metrics).
    pub gateway_admin_port: Option<u16>,
    /// What the lookup scenario seeded, if it runs.
    pub lookups: Option<lookup_seed::Setup>,
    /// The platform-adapter scenario's nodes and platform, if it runs.
    pub platform: Option<platform_setup::Started>,
}

impl Running {
    /// The process between the caller and the node for `target` (none when direct).
    pub fn proxy_of(&self, target: Target) -> Option<&Proc> {
        match target {
            Target::Direct => None,
            Target::Gateway => Some(&self.gateway),
            Target::Gateway3212 => self.gateway3212.as_ref().map(|(p, _)| p),
            Target::GatewayBaseline => self.baseline.as_ref().map(|(p, _)| p),
            Target::GatewayQuiet => self.quiet.as_ref().map(|(p, _)| p),
            Target::GatewayTraced => self.traced.as_ref().map(|(p, _)| p),
            Target::Nginx1 | Target::Nginx2 | Target::Haproxy1 | Target::Haproxy2 => self
                .peers
                .iter()
                .find(|(t, _, _)| *t == target)
                .map(|(_, p, _)| p),
        }
    }

    /// Stops everything.
    pub fn stop(self) {
        self.gateway.stop();
        self.node.stop();
        for (p, _) in self
            .gateway3212
            .into_iter()
            .chain(self.baseline)
            .chain(self.quiet)
            .chain(self.traced)
        {
            p.stop();
        }
        for (_, p, _) in self.peers {
            p.stop();
        }
        if let Some(started) = self.platform {
            started.stop();
        }
    }
}

/// The folder of this binary, where `scripts/bench` builds the other release binaries.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().context("binary folder")?.to_owned())
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Writes `<name>-registry.toml`: every prefix routed to the node. Returns the file's
/// name, relative to `dir` like the configs that point to it.
fn write_registry(
    dir: &Path,
    name: &str,
    node_port: u16,
    prefixes: &[String],
    issuer_key: Option<&tongban_runtime::trust::pki::IssuerKey>,
) -> anyhow::Result<String> {
    let now = SystemTime::now();
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
                    .map(|k| gateway::issuer_key_entry(k, now, Duration::from_secs(86400)))
                    .into_iter()
                    .collect(),
            })
            .collect(),
    };
    let registry_file = format!("{name}-registry.toml");
    gateway::write_registry(&dir.join(&registry_file), &registry, WRITER)?;
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
    let mut config = gateway::config(
        loopback(port),
        admin_port.map(loopback),
        // Paths relative to the config's folder, so the folder can be rerun by hand.
        tls_files(Path::new("pki"), &PeerIdentity::Gateway),
        registry_file.into(),
    );
    config.telemetry = telemetry;
    // A trail per gateway (a trail has one writer, and several run at once); the
    // baseline keeps the default (`gateway-audit.log`), left out of the written config
    // so an older binary still reads it, and so no other gateway may take that name:
    // `{name}-audit.log` would, for the gateway under test.
    if name != "gateway-baseline" {
        config.audit = TrailSettings::at(&format!("{name}.audit.log"));
    }
    let path = dir.join(format!("{name}.toml"));
    gateway::write(&path, &config, WRITER)?;
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

/// The peers to start, found (or installed) before anything starts, so a failed install
/// leaves no node or gateway running.
struct Peers {
    nginx: Option<(String, Vec<(Target, u32)>)>,
    haproxy: Option<(String, Vec<(Target, u32)>)>,
}

impl Peers {
    fn find(args: &Args) -> anyhow::Result<Self> {
        let nginx_configs: Vec<(Target, u32)> = [(Target::Nginx1, 1), (Target::Nginx2, 2)]
            .into_iter()
            .filter(|(t, _)| !args.no_nginx && args.wants(*t))
            .collect();
        let haproxy_configs: Vec<(Target, u32)> = [(Target::Haproxy1, 1), (Target::Haproxy2, 2)]
            .into_iter()
            .filter(|(t, _)| !args.no_haproxy && args.wants(*t))
            .collect();
        let nginx = if nginx_configs.is_empty() {
            None
        } else {
            Some((nginx::ensure_installed()?, nginx_configs))
        };
        let haproxy = if haproxy_configs.is_empty() {
            None
        } else {
            Some((haproxy::ensure_installed()?, haproxy_configs))
        };
        Ok(Self { nginx, haproxy })
    }

    /// Starts every peer configuration in front of the node on `node_port`.
    fn start(
        self,
        dir: &Path,
        pki_dir: &Path,
        node_port: u16,
    ) -> anyhow::Result<Vec<(Target, Proc, u16)>> {
        let node_name = PeerIdentity::Region(RegionPrefix::parse("44")?).dns_name();
        let gw = tls_files(pki_dir, &PeerIdentity::Gateway);
        let mut peers = Vec::new();
        if let Some((bin, configs)) = self.nginx {
            eprintln!("peer: {}", nginx::version(&bin));
            for (target, workers) in configs {
                let port = procs::free_port()?;
                let prefix = dir.join(format!("nginx-{workers}"));
                let conf = nginx::write_config(&nginx::NginxSetup {
                    prefix: &prefix,
                    workers,
                    listen_port: port,
                    upstream_port: node_port,
                    upstream_name: &node_name,
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
        if let Some((bin, configs)) = self.haproxy {
            eprintln!("peer: {}", haproxy::version(&bin));
            for (target, threads) in configs {
                let port = procs::free_port()?;
                let conf_dir = dir.join(format!("haproxy-{threads}"));
                let conf = haproxy::write_config(&haproxy::HaproxySetup {
                    dir: &conf_dir,
                    threads,
                    listen_port: port,
                    upstream_port: node_port,
                    upstream_name: &node_name,
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
        Ok(peers)
    }
}

/// The bench CA and the certificates of the gateway, the node (44) and the load's
/// client (31).
fn write_pki(pki_dir: &Path) -> anyhow::Result<()> {
    let pki = Pki::create(pki_dir, "bench CA")?;
    let node_id = PeerIdentity::Region(RegionPrefix::parse("44")?);
    let client_id = PeerIdentity::Region(RegionPrefix::parse("31")?);
    for id in [&PeerIdentity::Gateway, &node_id, &client_id] {
        pki.issue(id, Duration::from_secs(86400))?;
    }
    Ok(())
}

/// Starts the node as region 44 with nothing to review and, for the lookup scenario,
/// its issuer key; returns it and its federation port.
fn start_node(dir: &Path, lookups: Option<&lookup_seed::Setup>) -> anyhow::Result<(Proc, u16)> {
    let node_id = PeerIdentity::Region(RegionPrefix::parse("44")?);
    let node_port = procs::free_port()?;
    let portal_port = procs::free_port()?;
    let listen = ListenConfig {
        federation: loopback(node_port),
        portal: loopback(portal_port),
        admin: None,
    };
    let mut config = node::config(
        RegionCode::parse("440000")?,
        listen,
        tls_files(Path::new("pki"), &node_id),
        // Nothing is forwarded: the node only answers.
        vec!["https://127.0.0.1:9".into()],
        "",
        // No clerk: the node only answers lookups.
        node::embedded_platform("", 0, None),
    );
    config.peers = crate::node_peers::node_peers(dir)?;
    config.issuer.keys = lookups
        .iter()
        .map(|l| SigningKeyConfig {
            id: l.key.key_id.clone(),
            file: Path::new("pki").join(l.key_file.file_name().unwrap_or_default()),
            not_before: None,
        })
        .collect();
    let node_path = dir.join("node.toml");
    node::write(&node_path, &config, WRITER)?;
    let node = Proc::spawn(
        "node",
        &bin_dir()?.join("tongban-node"),
        &["--config", node_path.to_str().context("utf-8 path")?],
        &[("RUST_LOG", "warn")],
        &dir.join("node.log"),
    )?;
    Ok((node, node_port))
}

/// The gateways in front of the node.
struct Gateways {
    gateway: (Proc, u16),
    admin_port: u16,
    gateway3212: Option<(Proc, u16)>,
    baseline: Option<(Proc, u16)>,
    quiet: Option<(Proc, u16)>,
    traced: Option<(Proc, u16)>,
    collector: Option<OtlpCollector>,
}

/// Starts the gateway under test (34 routes, each province) and, as asked, the
/// 3,212-route one, the baseline binary and the telemetry-cost pair.
async fn start_gateways(
    args: &Args,
    dir: &Path,
    node_port: u16,
    lookups: Option<&lookup_seed::Setup>,
) -> anyhow::Result<Gateways> {
    let table = RegionTable::embedded();
    let provinces: Vec<String> = table
        .provinces()
        .map(|d| d.code.significant_prefix().to_owned())
        .collect();
    let gateway_bin = bin_dir()?.join("tongban-gateway");
    let issuer_key = lookups.map(|l| &l.key);
    let registry = write_registry(dir, "gateway", node_port, &provinces, issuer_key)?;
    let admin_port = procs::free_port()?;
    let default = TelemetryConfig::default;
    let gateway = spawn_gateway(
        dir,
        "gateway",
        &gateway_bin,
        &registry,
        Some(admin_port),
        default(),
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
            default(),
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
            Some(spawn_gateway(dir, name, &bin, &registry, None, default())?)
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
                ..default()
            },
        )?;
        let collector = OtlpCollector::start().await?;
        let traced = spawn_gateway(
            dir,
            Target::GatewayTraced.key(),
            &gateway_bin,
            &registry,
            None,
            TelemetryConfig {
                otlp_endpoint: Some(collector.endpoint()),
                sample_ratio: Some(0.01),
                ..default()
            },
        )?;
        (Some(quiet), Some(traced), Some(collector))
    };
    Ok(Gateways {
        gateway,
        admin_port,
        gateway3212,
        baseline,
        quiet,
        traced,
        collector,
    })
}

/// Starts everything `args` asks for in `dir`, and waits until all of it listens.
pub async fn start(args: &Args, dir: &Path) -> anyhow::Result<Running> {
    let peers = Peers::find(args)?;
    let pki_dir = dir.join("pki");
    write_pki(&pki_dir)?;
    let lookups = if args.no_lookups {
        None
    } else {
        eprintln!(
            "seeding {} licenses for the lookup scenario ...",
            args.lookup_licenses
        );
        Some(lookup_seed::seed(dir, &pki_dir, args.lookup_licenses).await?)
    };
    // First of the processes: the one most likely not to start (its binary missing).
    let platform = if args.no_platform {
        None
    } else {
        Some(platform_setup::start(dir, &bin_dir()?).await?)
    };
    let (node, node_port) = start_node(dir, lookups.as_ref())?;
    let gateways = start_gateways(args, dir, node_port, lookups.as_ref()).await?;
    let peers = peers.start(dir, &pki_dir, node_port)?;
    let (gateway, gateway_port) = gateways.gateway;
    let run = Running {
        node,
        node_port,
        gateway,
        gateway_port,
        gateway3212: gateways.gateway3212,
        baseline: gateways.baseline,
        quiet: gateways.quiet,
        traced: gateways.traced,
        collector: gateways.collector,
        peers,
        gateway_admin_port: Some(gateways.admin_port),
        lookups,
        platform,
    };
    wait_listening(&run).await?;
    Ok(run)
}

/// Waits until every process of `run` accepts connections.
async fn wait_listening(run: &Running) -> anyhow::Result<()> {
    procs::wait_listening(loopback(run.node_port), "node").await?;
    procs::wait_listening(loopback(run.gateway_port), "gateway").await?;
    for (target, gateway) in [
        (Target::Gateway3212, &run.gateway3212),
        (Target::GatewayBaseline, &run.baseline),
        (Target::GatewayQuiet, &run.quiet),
        (Target::GatewayTraced, &run.traced),
    ] {
        if let Some((_, port)) = gateway {
            procs::wait_listening(loopback(*port), target.label()).await?;
        }
    }
    for (t, _, port) in &run.peers {
        procs::wait_listening(loopback(*port), t.label()).await?;
    }
    Ok(())
}
