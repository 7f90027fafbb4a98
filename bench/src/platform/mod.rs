//! The platform-adapter scenario, in the same run as the relay table: deliveries
//! (`Node/DeliverApplication`, each a new case) to a node on the embedded platform and
//! to a node in front of the reference platform process over the HTTP contract (mutual
//! TLS, HMAC-signed requests, JSON), interleaved round by round at each in-flight count.
//!
//! The load calls each node directly as the gateway does (its client certificate, the
//! verified origin it adds), so what differs between the two is only the platform: a
//! gateway in front would add the same to both. Each delivery is answered after the
//! platform took the case (`node/src/delivery/handover.rs`), so its latency holds the
//! whole take-over: the embedded platform's SQLite write in the node, or the HTTP call
//! and the platform's SQLite write in its own process. CPU per delivery is the node's,
//! and the node's plus the platform process's for the HTTP adapter, from `/proc`.
//!
//! Afterwards each platform's database is read: every acknowledged delivery must be
//! a case there once, and no case may have moved on (no clerk runs).

pub mod deliveries;
mod report;
pub mod setup;

use std::time::Duration;

use tongban_proto::{contract::metadata, rules::region::RegionPrefix};
use tongban_runtime::trust::identity::PeerIdentity;

use crate::{
    load::{self, Caller, Payloads},
    measure::{SAMPLED_ONE_IN, channel},
    procs::Proc,
};

/// Where the deliveries go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Embedded,
    Http,
}

impl Kind {
    const ALL: [Kind; 2] = [Kind::Embedded, Kind::Http];

    fn label(self) -> &'static str {
        match self {
            Self::Embedded => "embedded platform (SQLite in the node)",
            Self::Http => "HTTP adapter → reference platform process",
        }
    }
}

/// Options of the scenario.
pub struct Options {
    pub rounds: u32,
    pub seconds: f64,
    pub warmup: f64,
    pub inflight: Vec<usize>,
}

/// One kind's measured window in one round.
struct Window {
    round: u32,
    calls: u64,
    elapsed: Duration,
    /// Latency of the window's answered deliveries (`None` without any).
    mean_us: Option<u64>,
    p50_us: Option<u64>,
    p99_us: Option<u64>,
    node_cpu_s: f64,
    /// NaN for the embedded platform (no process of its own).
    platform_cpu_s: f64,
}

impl Window {
    fn rps(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    /// CPU µs per delivery; NaN without a delivery.
    fn per_call_us(&self, cpu_s: f64) -> f64 {
        match self.calls {
            0 => f64::NAN,
            n => cpu_s * 1e6 / n as f64,
        }
    }

    fn node_us(&self) -> f64 {
        self.per_call_us(self.node_cpu_s)
    }

    fn platform_us(&self) -> f64 {
        self.per_call_us(self.platform_cpu_s)
    }

    /// The node's and the platform process's, or the node's alone when the platform
    /// runs inside it.
    fn total_us(&self) -> f64 {
        if self.platform_cpu_s.is_nan() {
            self.node_us()
        } else {
            self.per_call_us(self.node_cpu_s + self.platform_cpu_s)
        }
    }
}

/// One kind at one in-flight count, over all rounds.
struct Row {
    kind: Kind,
    inflight: usize,
    windows: Vec<Window>,
    /// Latency of the measured deliveries of all rounds together.
    latency: hdrhistogram::Histogram<u64>,
    /// Answered deliveries in the measured windows; failed ones, warm-ups' included.
    calls: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Row {
    fn window(&self, round: u32) -> Option<&Window> {
        self.windows.iter().find(|w| w.round == round)
    }
}

/// The caller of one node: the gateway's certificate, the verified origin (31) the
/// gateway would add; the idempotency key is each delivery's own.
async fn caller(pki: &std::path::Path, port: u16) -> anyhow::Result<Caller> {
    let node_id = PeerIdentity::Region(RegionPrefix::parse("44")?);
    Ok(Caller {
        channel: channel(pki, &PeerIdentity::Gateway, port, &node_id).await?,
        path: tonic::codegen::http::uri::PathAndQuery::from_static(
            "/tongban.federation.v1.Node/DeliverApplication",
        ),
        metadata: vec![
            (metadata::VERIFIED_ORIGIN, "31".to_owned()),
            (metadata::TARGET_REGION, "440305".to_owned()),
            (
                metadata::ONE_THING,
                "medical-treatment-registration".to_owned(),
            ),
        ],
        sampled_one_in: Some(SAMPLED_ONE_IN),
    })
}

/// CPU seconds spent between two readings; NaN when either is missing.
fn spent(before: Option<f64>, after: Option<f64>) -> f64 {
    match (before, after) {
        (Some(b), Some(a)) => a - b,
        _ => f64::NAN,
    }
}

/// Warms up, then measures `inflight` deliveries of `caller` for `options.seconds`,
/// with the CPU of `node` and of `platform` (if it is a process of its own). Returns
/// the window, its calls (with the warm-up's failures), and the warm-up's answered
/// deliveries.
async fn window(
    caller: &Caller,
    payloads: &Payloads,
    (node, platform): (&Proc, Option<&Proc>),
    inflight: usize,
    options: &Options,
) -> (Window, load::RunStats, u64) {
    let warm = load::run(
        caller,
        payloads.clone(),
        inflight,
        Duration::from_secs_f64(options.warmup),
    )
    .await;
    let (n0, p0) = (node.cpu_seconds(), platform.map(Proc::cpu_seconds));
    let stats = load::run(
        caller,
        payloads.clone(),
        inflight,
        Duration::from_secs_f64(options.seconds),
    )
    .await;
    let answered = !stats.latency_us.is_empty();
    let window = Window {
        round: 0,
        calls: stats.calls,
        elapsed: stats.elapsed,
        mean_us: answered.then(|| stats.latency_us.mean().round() as u64),
        p50_us: answered.then(|| stats.latency_us.value_at_quantile(0.5)),
        p99_us: answered.then(|| stats.latency_us.value_at_quantile(0.99)),
        node_cpu_s: spent(n0, node.cpu_seconds()),
        platform_cpu_s: p0.map_or(f64::NAN, |p0| {
            spent(p0, platform.and_then(Proc::cpu_seconds))
        }),
    };
    // A failed warm-up call counts as failed too: "every delivery answered" means all.
    let mut stats = stats;
    stats.errors += warm.errors;
    if stats.first_error.is_none() {
        stats.first_error = warm.first_error;
    }
    (window, stats, warm.calls)
}

/// Adds a measured window of `kind` to its row.
fn record(
    rows: &mut Vec<Row>,
    kind: Kind,
    inflight: usize,
    (window, stats): (Window, load::RunStats),
) {
    let row = match rows
        .iter()
        .position(|r| r.kind == kind && r.inflight == inflight)
    {
        Some(i) => &mut rows[i],
        None => {
            rows.push(Row {
                kind,
                inflight,
                windows: Vec::new(),
                latency: load::new_histogram(),
                calls: 0,
                errors: 0,
                first_error: None,
            });
            rows.last_mut().expect("just pushed")
        }
    };
    let _ = row.latency.add(&stats.latency_us);
    row.calls += stats.calls;
    row.errors += stats.errors;
    row.first_error = row.first_error.take().or(stats.first_error);
    row.windows.push(window);
}

/// Measures the scenario on the processes of `started` and prints its tables and
/// checks.
pub async fn run(
    started: &mut setup::Started,
    pki: &std::path::Path,
    options: &Options,
) -> anyhow::Result<()> {
    let callers = [
        (Kind::Embedded, caller(pki, started.embedded.1).await?),
        (Kind::Http, caller(pki, started.http.1).await?),
    ];
    let (payloads, size) = deliveries::fresh()?;
    // One delivery each first: a node that refuses them is named before any load.
    for (kind, caller) in &callers {
        if let Err(e) = deliveries::once(caller, &payloads).await {
            anyhow::bail!("the first delivery to the {} failed: {e}", kind.label());
        }
    }
    // Deliveries answered, warm-ups and the first ones included: each is a case at the
    // platform.
    let mut acknowledged = [(Kind::Embedded, 1), (Kind::Http, 1)];
    let mut rows: Vec<Row> = Vec::new();
    for &inflight in &options.inflight {
        eprintln!("measuring deliveries (platform adapter) at {inflight} in flight ...");
        for round in 0..options.rounds {
            // Rotate the order each round so neither always runs first.
            for i in 0..Kind::ALL.len() {
                let kind = Kind::ALL[(i + round as usize) % Kind::ALL.len()];
                let Some((_, caller)) = callers.iter().find(|(k, _)| *k == kind) else {
                    continue;
                };
                let procs = match kind {
                    Kind::Embedded => (&started.embedded.0, None),
                    Kind::Http => (&started.http.0, Some(&started.platform)),
                };
                let (mut measured, stats, warm_calls) =
                    window(caller, &payloads, procs, inflight, options).await;
                measured.round = round;
                for (k, n) in &mut acknowledged {
                    if *k == kind {
                        *n += warm_calls + stats.calls;
                    }
                }
                record(&mut rows, kind, inflight, (measured, stats));
            }
            started.check_alive()?;
        }
    }
    let held = [
        deliveries::held(&started.embedded_db).await,
        deliveries::held(&started.files.database).await,
    ];
    let platforms: Vec<report::Platform> = acknowledged
        .into_iter()
        .zip(held)
        .map(|((kind, acknowledged), held)| report::Platform {
            kind,
            acknowledged,
            held: held.map_err(|e| format!("{e:#}")),
        })
        .collect();
    report::print(&rows, &platforms, size, options);
    Ok(())
}
