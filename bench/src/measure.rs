//! The calls measured: the delivery each target is called with (padded to each payload
//! size), a caller per target, and the measured windows with the CPU the proxy and the
//! node spent on them.

use std::{path::Path, time::Duration};

use anyhow::{Context, bail};
use prost::Message;
use tongban_kit::config::pki::tls_files;
use tongban_node::platform::embedded::synthetic_residents;
use tongban_proto::{
    contract::metadata,
    rules::region::{RegionPrefix, RegionTable},
    v1::{Applicant, Application, DeliverApplicationRequest, MaterialRef, MaterialSource},
};
use tongban_runtime::trust::{
    connector::{self, FederationConnector},
    identity::PeerIdentity,
    tls::ClientSettings,
};

use crate::{
    args::Args,
    cell::{Cell, Round, Slot, merge},
    load::{self, Caller},
    procs::{self, Proc},
    setup::Running,
    target::Target,
};

/// A valid application of a synthetic Guangdong resident, filed in Shanghai.
pub fn application(case_number: &str) -> anyhow::Result<Application> {
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
        catalog_version: tongban_proto::rules::catalog::Catalog::embedded().version,
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

pub async fn channel(
    pki: &Path,
    client: &PeerIdentity,
    port: u16,
    server: &PeerIdentity,
) -> anyhow::Result<tonic::transport::Channel> {
    let (endpoint, connector) = endpoint(pki, client, port, server)?;
    Ok(endpoint.connect_with_connector(connector).await?)
}

/// A channel like [`channel`]'s that connects on its first call (to a node stopped on
/// purpose by `--target-down`, whose calls are then measured failing).
pub fn lazy_channel(
    pki: &Path,
    client: &PeerIdentity,
    port: u16,
    server: &PeerIdentity,
) -> anyhow::Result<tonic::transport::Channel> {
    let (endpoint, connector) = endpoint(pki, client, port, server)?;
    Ok(endpoint.connect_with_connector_lazy(connector))
}

/// The endpoint at `port` on loopback and the connector that proves `client` to
/// `server` there.
fn endpoint(
    pki: &Path,
    client: &PeerIdentity,
    port: u16,
    server: &PeerIdentity,
) -> anyhow::Result<(tonic::transport::Endpoint, FederationConnector)> {
    let connector = FederationConnector::from_files(&tls_files(pki, client), server.clone())?;
    let endpoint = connector::endpoint(
        &format!("https://127.0.0.1:{port}"),
        &ClientSettings::default(),
    )?;
    Ok((endpoint, connector))
}

/// Idempotency key of the calls before [`primed`] gives each payload its own.
const KEY: &str = "bench-replay-key";

/// Every call carries its own `traceparent`, as nodes send them, and one in this many is
/// sampled: the traced gateway records 1 % of calls, as with portals sampling 1 %.
pub const SAMPLED_ONE_IN: u64 = 100;

pub async fn callers(run: &Running, pki: &Path) -> anyhow::Result<Vec<(Target, Caller)>> {
    let node_id = PeerIdentity::Region(RegionPrefix::parse("44")?);
    let client_id = PeerIdentity::Region(RegionPrefix::parse("31")?);
    let signer = crate::node_peers::signer_31(pki)?;
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
                signer: signer.clone(),
            },
        ),
        (
            Target::Gateway,
            Caller {
                channel: channel(pki, &client_id, run.gateway_port, &PeerIdentity::Gateway).await?,
                path: gw_path.clone(),
                metadata: node_meta.clone(),
                sampled_one_in: Some(SAMPLED_ONE_IN),
                signer: signer.clone(),
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
                    signer: signer.clone(),
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
                signer: signer.clone(),
            },
        ));
    }
    Ok(out)
}

/// One measured window of one caller: its calls, and the CPU the proxy (if any) and
/// the node spent on them.
pub struct Measured {
    pub stats: load::RunStats,
    pub proxy_cpu_s: f64,
    pub node_cpu_s: f64,
    pub upstream_conns: usize,
}

/// Warms up, then measures `inflight` calls of `caller` for `seconds`.
pub async fn measure_window(
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
    let p0 = proxy.map(Proc::cpu_seconds);
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
        // No proxy (a direct call): none of its CPU. A reading that failed: NaN, which
        // no figure, ratio or goal takes for a value.
        proxy_cpu_s: p0.map_or(0.0, |p0| spent(p0, proxy.and_then(Proc::cpu_seconds))),
        node_cpu_s: spent(n0, run.node.cpu_seconds()),
        upstream_conns: sampler.await.unwrap_or(0),
    }
}

/// CPU seconds spent between two readings; NaN when either is missing.
fn spent(before: Option<f64>, after: Option<f64>) -> f64 {
    match (before, after) {
        (Some(b), Some(a)) => a - b,
        _ => f64::NAN,
    }
}

pub async fn measure(
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
        run.proxy_of(target),
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

/// One real delivery per payload size creates a case; every measured call then replays
/// that case under the same idempotency key with identical bytes, so the node answers
/// from its idempotency record and the proxy's cost stands out. Returns the callers
/// using that key and the encoded request. With `target_down` (the node stopped on
/// purpose) a failed priming is only reported: the calls are then measured failing.
pub async fn primed(
    callers: &[(Target, Caller)],
    n: usize,
    size: usize,
    target_down: bool,
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
    match load::once(direct, body.clone()).await {
        Err(e) if target_down => eprintln!("priming delivery of {size} B failed: {e}"),
        Err(e) => bail!("priming delivery of {size} B failed: {e}"),
        Ok(()) => {}
    }
    Ok((callers, body))
}

/// Gateways that do the same work per call, compared at 256 B and 64 in flight over
/// twice the rounds (what differs is mostly the machine's noise, which more
/// alternations average out), the order rotated every round.
pub async fn interleaved(
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
