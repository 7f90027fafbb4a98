//! The command line.

use std::path::PathBuf;

use anyhow::bail;
use clap::Parser;

use crate::target::Target;

/// Gateway vs direct vs nginx and HAProxy, one run, one table.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Args {
    /// Measured seconds per cell and round.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Warm-up seconds before each measured window (not counted).
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
    /// Interleaved rounds per cell; the table shows the median over rounds and the
    /// spread, ratios are taken round by round.
    #[arg(long, default_value_t = 2)]
    pub rounds: u32,
    /// Payload sizes in bytes (encoded request message).
    #[arg(long, value_delimiter = ',', default_value = "256,4096,65536")]
    pub payloads: Vec<usize>,
    /// Calls in flight.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    pub inflight: Vec<usize>,
    /// Targets to measure, of: direct, gateway, gateway-baseline, nginx1, nginx2,
    /// haproxy1, haproxy2 (default: all). Peers not named are not started.
    #[arg(long, value_delimiter = ',')]
    pub targets: Vec<String>,
    /// Another tongban-gateway binary (e.g. built before a change) to measure as target
    /// gateway-baseline, with the gateway's config on a port of its own, so before and
    /// after are compared in one run on the same machine state.
    #[arg(long, value_name = "PATH")]
    pub baseline_gateway: Option<PathBuf>,
    /// Skip nginx (no install, no nginx peer).
    #[arg(long)]
    pub no_nginx: bool,
    /// Skip HAProxy (no install, no HAProxy peer).
    #[arg(long)]
    pub no_haproxy: bool,
    /// Skip the route-scale and memory checks.
    #[arg(long)]
    pub no_scale: bool,
    /// Skip the telemetry-cost check (the gateway with telemetry off, and with metrics
    /// and 1 % of traces exported, against the default: metrics on, traces off).
    #[arg(long)]
    pub no_telemetry_cost: bool,
    /// Skip the lookup scenario (cached and uncached license lookups, the issuer direct).
    #[arg(long)]
    pub no_lookups: bool,
    /// Skip the platform-adapter scenario (fresh deliveries to a node on the embedded
    /// platform and to one in front of a reference platform process over HTTP).
    #[arg(long, conflicts_with = "platform_only")]
    pub no_platform: bool,
    /// Run only the platform-adapter scenario (as --no-nginx --no-haproxy --no-scale
    /// --no-telemetry-cost --no-lookups --no-store, and no relay table).
    #[arg(long)]
    pub platform_only: bool,
    /// Deliveries in flight in the platform-adapter scenario.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub platform_inflight: Vec<usize>,
    /// Interleaved rounds of the platform-adapter scenario (each of its windows is
    /// --seconds long, after --warmup).
    #[arg(long, default_value_t = 5)]
    pub platform_rounds: u32,
    /// Skip the node-store scenario (filings at one node with its store on SQLite, on
    /// PostgreSQL with one replica and with two; needs PostgreSQL 15, see
    /// scripts/test-tools).
    #[arg(long, conflicts_with_all = ["store_only", "platform_only"])]
    pub no_store: bool,
    /// Run only the node-store scenario (no relay table, no other scenario: it starts
    /// federations of its own).
    #[arg(long, conflicts_with = "platform_only")]
    pub store_only: bool,
    /// Interleaved rounds of the node-store scenario, each configuration on a fresh
    /// federation in each.
    #[arg(long, default_value_t = 3)]
    pub store_rounds: u32,
    /// Measured filings per configuration and round in the node-store scenario.
    #[arg(long, default_value_t = 1000)]
    pub store_filings: usize,
    /// Filings in flight in the node-store scenario.
    #[arg(long, default_value_t = 16)]
    pub store_inflight: usize,
    /// Warm-up filings before each measured batch of the node-store scenario (delivered
    /// before it starts, not counted).
    #[arg(long, default_value_t = 64)]
    pub store_warmup: usize,
    /// Licenses seeded in the node's register for the lookup scenario: enough for the
    /// cache fill and every uncached lookup measured.
    #[arg(long, default_value_t = 200_000)]
    pub lookup_licenses: u32,
    /// Distinct licenses looked up before the gateway's RSS is read.
    #[arg(long, default_value_t = 100_000)]
    pub lookup_fill: usize,
    /// Stops the node once the callers are connected, so that every call of the run
    /// fails: shows what the goals say of a run whose target was down (each must answer
    /// "cannot judge"). For checking the tool, not for measuring.
    #[arg(long, hide = true)]
    pub target_down: bool,
    /// Working folder (certificates, configs, logs, databases).
    #[arg(long, default_value = "/tmp/tongban-bench")]
    pub dir: PathBuf,
}

impl Args {
    /// Whether `target` is to be measured (and so started).
    pub fn wants(&self, target: Target) -> bool {
        self.targets.is_empty() || self.targets.iter().any(|k| k == target.key())
    }

    /// `--platform-only` and `--store-only` turn every other scenario off.
    pub fn settle(&mut self) {
        if self.platform_only || self.store_only {
            self.no_nginx = true;
            self.no_haproxy = true;
            self.no_scale = true;
            self.no_telemetry_cost = true;
            self.no_lookups = true;
        }
        if self.platform_only {
            self.no_store = true;
        }
        if self.store_only {
            self.no_platform = true;
        }
    }

    /// Rejects unknown target keys and a baseline target without its binary, which would
    /// otherwise just leave rows out of the table.
    pub fn check(&self) -> anyhow::Result<()> {
        for key in &self.targets {
            if !Target::MEASURED.iter().any(|t| t.key() == key) {
                let known: Vec<&str> = Target::MEASURED.iter().map(|t| t.key()).collect();
                bail!("unknown target {key:?}; known: {}", known.join(", "));
            }
        }
        if !self.no_platform && (self.platform_rounds == 0 || self.platform_inflight.contains(&0)) {
            bail!("--platform-rounds and --platform-inflight must be at least 1");
        }
        if !self.no_store
            && (self.store_rounds == 0 || self.store_filings == 0 || self.store_inflight == 0)
        {
            bail!("--store-rounds, --store-filings and --store-inflight must be at least 1");
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
