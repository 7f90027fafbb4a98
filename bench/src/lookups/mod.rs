//! The lookup scenario, in the same run as the relay table: one license looked up
//! through the gateway and answered from its cache, lookups of licenses never looked up
//! before (each goes to the issuer, is verified and cached), and the issuer asked
//! directly — beside a routed call — interleaved round by round at each in-flight
//! count; then the gateway's RSS once its license cache holds `--lookup-fill` entries.
//! What the node's register holds for it is written by [`seed`] before the node starts.

pub mod seed;

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use prost::Message;
use tongban_node::portal_client::PortalClient;
use tongban_proto::{
    contract::metadata,
    rules::region::RegionPrefix,
    v1::{FetchLicenseRequest, LookupLicenseRequest, LookupPurpose},
};
use tongban_runtime::trust::identity::PeerIdentity;

use crate::{
    load::{self, Caller, Payloads},
    measure::{channel, measure_window},
    report,
    setup::Running,
};

fn framed(message: &impl Message) -> bytes::Bytes {
    // The load tool sends message bodies as they are; it adds the gRPC frame itself.
    bytes::Bytes::from(message.encode_to_vec())
}

fn lookup(setup: &seed::Setup, license_id: &str) -> bytes::Bytes {
    framed(&LookupLicenseRequest {
        license_id: license_id.to_owned(),
        license_type: "marriage_certificate".into(),
        purpose: Some(LookupPurpose {
            one_thing_id: "household-transfer".into(),
            case_number: "310000-20261201-00000001".into(),
        }),
        material_id: "marriage_certificate".into(),
        holder_id_number: setup.holder.clone(),
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Routed,
    Cached,
    Uncached,
    Issuer,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Routed, Kind::Cached, Kind::Uncached, Kind::Issuer];

    fn label(self) -> &'static str {
        match self {
            Self::Routed => "routed call via gateway (DeliverApplication, 256 B)",
            Self::Cached => "lookup via gateway, cached",
            Self::Uncached => "lookup via gateway, uncached",
            Self::Issuer => "lookup direct to the issuer (FetchLicense)",
        }
    }
}

/// One kind at one in-flight count, round by round.
struct Row {
    kind: Kind,
    inflight: usize,
    rounds: Vec<(f64, f64, f64)>,
    latency: hdrhistogram::Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

/// Options of the scenario.
pub struct Options {
    pub rounds: u32,
    pub seconds: f64,
    pub warmup: f64,
    pub inflight: Vec<usize>,
    pub fill: usize,
}

/// The scenario's callers and what each sends.
struct Calls {
    routed: (Caller, bytes::Bytes),
    /// Lookups through the gateway: always the same license (cached), or one never
    /// asked for before from `fresh`, taken in turn by `cursor` (uncached).
    cached: Caller,
    cached_body: bytes::Bytes,
    fresh: usize,
    cursor: Arc<AtomicUsize>,
    uncached: Payloads,
    issuer: Caller,
    issuer_body: bytes::Bytes,
}

impl Calls {
    /// Connects the callers and checks that the cached license is really recognized
    /// (the load tool sees only gRPC statuses).
    async fn new(
        run: &Running,
        pki: &Path,
        setup: &seed::Setup,
        routed: (Caller, bytes::Bytes),
    ) -> anyhow::Result<Self> {
        let client = PeerIdentity::Region(RegionPrefix::parse("31")?);
        let node = PeerIdentity::Region(RegionPrefix::parse("44")?);
        let gateway_channel =
            channel(pki, &client, run.gateway_port, &PeerIdentity::Gateway).await?;
        let cached = Caller {
            channel: gateway_channel.clone(),
            path: tonic::codegen::http::uri::PathAndQuery::from_static(
                "/tongban.federation.v1.Gateway/LookupLicense",
            ),
            metadata: vec![(metadata::ONE_THING, "household-transfer".to_owned())],
            sampled_one_in: None,
        };
        let cached_body = lookup(setup, &setup.licenses[0]);
        let verdict = tongban_proto::v1::gateway_client::GatewayClient::new(gateway_channel)
            .lookup_license(LookupLicenseRequest::decode(cached_body.clone())?)
            .await?
            .into_inner();
        anyhow::ensure!(
            verdict.outcome == tongban_proto::v1::VerdictOutcome::Recognized as i32,
            "the benchmark's license is not recognized: {verdict:?}"
        );
        let fresh: Arc<Vec<bytes::Bytes>> = Arc::new(
            setup.licenses[1..]
                .iter()
                .map(|id| lookup(setup, id))
                .collect(),
        );
        let cursor = Arc::new(AtomicUsize::new(0));
        let issuer = Caller {
            channel: channel(pki, &PeerIdentity::Gateway, run.node_port, &node).await?,
            path: tonic::codegen::http::uri::PathAndQuery::from_static(
                "/tongban.federation.v1.Node/FetchLicense",
            ),
            metadata: vec![(metadata::VERIFIED_ORIGIN, "31".to_owned())],
            sampled_one_in: None,
        };
        let issuer_body = framed(&FetchLicenseRequest {
            license_id: setup.licenses[0].clone(),
            purpose: None,
            holder_id_number: setup.holder.clone(),
        });
        Ok(Self {
            routed,
            cached,
            cached_body,
            fresh: fresh.len(),
            uncached: Payloads::Pool {
                messages: fresh,
                next: cursor.clone(),
            },
            cursor,
            issuer,
            issuer_body,
        })
    }

    /// Fresh licenses looked up so far.
    fn used(&self) -> usize {
        self.cursor.load(Ordering::Relaxed)
    }
}

/// Measures the scenario and prints its tables. `routed` is the gateway's caller for
/// the relay table's 256 B call with its (primed) message.
pub async fn run(
    run: &Running,
    pki: &Path,
    setup: &seed::Setup,
    routed: (Caller, bytes::Bytes),
    options: &Options,
) -> anyhow::Result<()> {
    let calls = Calls::new(run, pki, setup, routed).await?;
    let rows = measure_rows(run, &calls, options).await;
    let used = calls.used();
    if used >= calls.fresh {
        eprintln!(
            "warning: the uncached lookups ran out of fresh licenses ({used} of {}); raise --lookup-licenses",
            calls.fresh
        );
    }

    // Fill the license cache, then read the gateway's memory.
    let target = options.fill.min(calls.fresh);
    eprintln!("filling the gateway's license cache to {target} entries ...");
    while calls.used() < target {
        let _ = load::run(
            &calls.cached,
            calls.uncached.clone(),
            64,
            Duration::from_secs(2),
        )
        .await;
    }
    let loads = cache_loads(run).await;
    let (rss_now, rss_peak) = run.gateway.rss_kib();

    print_rows(&rows, options);
    println!(
        "\nGateway with a full license cache: {} license loads ({} distinct licenses looked up), RSS {:.1} MiB now, {:.1} MiB peak.",
        loads.map_or("?".into(), |l| l.to_string()),
        calls.used() + 1,
        rss_now as f64 / 1024.0,
        rss_peak as f64 / 1024.0
    );
    print_goals(&rows, target, rss_peak);
    Ok(())
}

/// Every kind at every in-flight count, interleaved round by round.
async fn measure_rows(run: &Running, calls: &Calls, options: &Options) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for &inflight in &options.inflight {
        eprintln!("measuring lookups at {inflight} in flight ...");
        for round in 0..options.rounds {
            for i in 0..Kind::ALL.len() {
                let kind = Kind::ALL[(i + round as usize) % Kind::ALL.len()];
                let (caller, payloads, proxy) = match kind {
                    Kind::Routed => (
                        &calls.routed.0,
                        Payloads::One(calls.routed.1.clone()),
                        Some(&run.gateway),
                    ),
                    Kind::Cached => (
                        &calls.cached,
                        Payloads::One(calls.cached_body.clone()),
                        Some(&run.gateway),
                    ),
                    Kind::Uncached => (&calls.cached, calls.uncached.clone(), Some(&run.gateway)),
                    Kind::Issuer => (
                        &calls.issuer,
                        Payloads::One(calls.issuer_body.clone()),
                        None,
                    ),
                };
                let m = measure_window(
                    run,
                    proxy,
                    caller,
                    payloads,
                    inflight,
                    options.warmup,
                    options.seconds,
                )
                .await;
                let calls = m.stats.calls.max(1) as f64;
                let figures = (
                    m.stats.calls as f64 / m.stats.elapsed.as_secs_f64(),
                    m.proxy_cpu_s * 1e6 / calls,
                    m.node_cpu_s * 1e6 / calls,
                );
                match rows
                    .iter_mut()
                    .find(|r| r.kind == kind && r.inflight == inflight)
                {
                    Some(row) => {
                        row.rounds.push(figures);
                        let _ = row.latency.add(&m.stats.latency_us);
                        row.errors += m.stats.errors;
                        row.first_error = row.first_error.take().or(m.stats.first_error);
                    }
                    None => rows.push(Row {
                        kind,
                        inflight,
                        rounds: vec![figures],
                        latency: m.stats.latency_us,
                        errors: m.stats.errors,
                        first_error: m.stats.first_error,
                    }),
                }
            }
        }
    }
    rows
}

/// The lookups table.
fn print_rows(rows: &[Row], options: &Options) {
    println!("\n## Lookups\n");
    println!(
        "{} s per cell and round (+{} s warm-up), {} interleaved rounds; req/s and CPU per call: median over rounds (min–max); gateway CPU is the gateway process's, node CPU the issuer's.\n",
        options.seconds, options.warmup, options.rounds
    );
    println!(
        "| in flight | what | req/s | p50 µs | p99 µs | errors | gateway CPU µs/call | node CPU µs/call |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let col = |f: fn(&(f64, f64, f64)) -> f64| {
            let values: Vec<f64> = row.rounds.iter().map(f).collect();
            report::median_spread(&values)
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            row.inflight,
            row.kind.label(),
            col(|r| r.0),
            row.latency.value_at_quantile(0.5),
            row.latency.value_at_quantile(0.99),
            row.errors,
            if row.kind == Kind::Issuer {
                "–".into()
            } else {
                col(|r| r.1)
            },
            col(|r| r.2),
        );
        if let Some(e) = &row.first_error {
            println!("|  | first error: {e} | | | | | | |");
        }
    }
}

/// The lookup goals, each figure per round of the same run.
fn print_goals(rows: &[Row], cached_licenses: usize, rss_peak: u64) {
    let find = |kind, inflight| {
        rows.iter()
            .find(|r| r.kind == kind && r.inflight == inflight)
    };
    println!("\n### Lookup goals\n");
    if let (Some(cached), Some(issuer)) = (find(Kind::Cached, 1), find(Kind::Issuer, 1)) {
        let (c, d) = (
            cached.latency.value_at_quantile(0.5),
            issuer.latency.value_at_quantile(0.5),
        );
        println!(
            "- {}: cached lookup p50 via the gateway below a direct uncached call to the issuer (1 in flight): {c} µs vs {d} µs",
            if c < d { "met" } else { "NOT met" }
        );
    }
    if let (Some(cached), Some(routed)) = (find(Kind::Cached, 64), find(Kind::Routed, 64)) {
        let ratio = |f: fn(&(f64, f64, f64)) -> f64| -> Vec<f64> {
            cached
                .rounds
                .iter()
                .zip(&routed.rounds)
                .map(|(c, r)| f(c) / f(r))
                .collect()
        };
        let throughput = ratio(|r| r.0);
        let cpu = ratio(|r| r.1);
        let t = report::median_of(&throughput);
        let c = report::median_of(&cpu);
        println!(
            "- {}: cached lookups ≥ 2× the routed calls' throughput at 64 in flight: {}",
            if t >= 2.0 { "met" } else { "NOT met" },
            report::ratio_spread(&throughput)
        );
        println!(
            "- {}: cached lookups ≤ 0.5× the routed calls' gateway CPU per call at 64 in flight: {}",
            if c <= 0.5 { "met" } else { "NOT met" },
            report::ratio_spread(&cpu)
        );
    }
    let mib = rss_peak as f64 / 1024.0;
    println!(
        "- {}: gateway RSS < 64 MiB with {cached_licenses} cached licenses: {mib:.1} MiB peak",
        if mib < 64.0 { "met" } else { "NOT met" }
    );
}

/// The gateway's license-cache loads, from its `/metrics`.
async fn cache_loads(run: &Running) -> Option<u64> {
    let port = run.gateway_admin_port?;
    let text = PortalClient::new(format!("http://127.0.0.1:{port}"))
        .get("/metrics")
        .await
        .ok()?
        .body
        .as_str()?
        .to_owned();
    text.lines()
        .find(|l| {
            l.starts_with(
                "tongban_recognition_cache_events_total{cache=\"license\",event=\"load\"}",
            )
        })?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}
