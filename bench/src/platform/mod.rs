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
mod model;
mod report;
pub mod setup;

use tongban_proto::{contract::metadata, rules::region::RegionPrefix};
use tongban_runtime::trust::identity::PeerIdentity;

use std::time::Duration;

use model::{Kind, Row, Window};

pub use model::Options;

use crate::{
    load::{self, Caller, Payloads},
    measure::{SAMPLED_ONE_IN, channel},
    procs::Proc,
};

/// The caller of one node: the gateway's certificate, the verified origin (31) the
/// gateway would add; the idempotency key is each delivery's own.
async fn caller(pki: &std::path::Path, port: u16) -> anyhow::Result<Caller> {
    let node_id = PeerIdentity::Region(RegionPrefix::parse("44")?);
    Ok(Caller {
        channel: channel(pki, &PeerIdentity::Gateway, port, &node_id).await?,
        signer: crate::node_peers::signer_31(pki)?,
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
