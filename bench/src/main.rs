//! `tongban-bench`: the same unary delivery call made directly to a node, through
//! Tongban's gateway and through two peers, nginx and HAProxy, as plain mTLS gRPC
//! routers, interleaved in one run, with latency from the client and CPU time per call
//! from the OS's accounting of each process. `--baseline-gateway` adds another gateway
//! binary under the same config, to compare before and after a change in one run.
//!
//! The platform-adapter scenario (`platform`) delivers new cases to a node on the
//! embedded platform and to one in front of the reference platform process over the
//! HTTP contract, interleaved, for deliveries per second and the latency and CPU the
//! adapter adds.
//!
//! The node-store scenario (`store`) files at one node with its store on SQLite, on
//! PostgreSQL with one replica and with two, interleaved, each round on fresh
//! federations the kit starts, for filings and deliveries per second and CPU per
//! filing (the node's and the PostgreSQL cluster's).
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
//! [`target::Target`] and a way to build its [`load::Caller`] (`measure::callers`).

mod apt;
mod args;
mod cell;
mod haproxy;
mod judgement;
mod load;
mod lookups;
mod measure;
mod nginx;
mod node_peers;
mod platform;
mod procs;
mod report;
mod setup;
mod store;
mod target;

use std::path::Path;

use anyhow::Context;
use clap::Parser;
use tongban_runtime::trust::tls;

use crate::{
    args::Args,
    cell::{Cell, Slot, merge, size_label},
    load::Caller,
    measure::{callers, interleaved, measure, primed},
    setup::Running,
    target::Target,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    args.settle();
    args.check()?;
    tls::install_crypto_provider();
    // Wiped only if an earlier benchmark made it (or it is empty).
    let dir = tongban_runtime::process::workdir::prepare(&args.dir, "tongban-bench")?;
    if !args.store_only {
        let mut run = setup::start(&args, &dir).await?;
        let result = bench(&args, &dir, &mut run).await;
        run.stop();
        result?;
    }
    // Last, once the other scenarios' processes are stopped: it starts federations of
    // its own and should have the machine to itself.
    if !args.no_store {
        let options = store::Options {
            rounds: args.store_rounds,
            filings: args.store_filings,
            warmup: args.store_warmup,
            inflight: args.store_inflight,
        };
        store::run(&options, &setup::bin_dir()?, &dir.join("store")).await?;
    }
    Ok(())
}

/// The main table: every measured target at every payload size and concurrency, round
/// by round.
async fn main_table(
    args: &Args,
    run: &mut Running,
    callers: &[(Target, Caller)],
) -> anyhow::Result<Vec<Cell>> {
    let mut cells: Vec<Cell> = Vec::new();
    let main_targets: Vec<Target> = Target::MEASURED
        .into_iter()
        .filter(|t| args.wants(*t))
        .filter(|t| callers.iter().any(|(c, _)| c == t))
        .collect();
    for (n, &size) in args.payloads.iter().enumerate() {
        let (callers, body) = primed(callers, n, size, args.target_down).await?;
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
                if !args.target_down {
                    run.node.check_alive()?;
                }
            }
        }
    }
    Ok(cells)
}

/// The gateways' RSS: now as `idle_kib`, the peak so far as `peak_kib` (`None` when
/// `/proc` gave no reading).
fn gateways_rss(run: &Running) -> Vec<report::Memory> {
    [
        (Target::Gateway, Some(&run.gateway)),
        (
            Target::Gateway3212,
            run.gateway3212.as_ref().map(|(p, _)| p),
        ),
        (
            Target::GatewayBaseline,
            run.baseline.as_ref().map(|(p, _)| p),
        ),
    ]
    .into_iter()
    .filter_map(|(target, p)| {
        let (now, peak) = p?.rss_kib().unzip();
        Some(report::Memory {
            target,
            name: p?.name.clone(),
            idle_kib: now,
            peak_kib: peak,
        })
    })
    .collect()
}

async fn bench(args: &Args, dir: &Path, run: &mut Running) -> anyhow::Result<()> {
    let pki = dir.join("pki");
    if args.platform_only {
        return platform_adapter(args, &pki, run).await;
    }
    let callers = callers(run, &pki).await?;
    let idle_rss = gateways_rss(run);
    if args.target_down {
        eprintln!("--target-down: stopping the node; every call from here on fails");
        run.node.kill_now();
    }

    let cells = main_table(args, run, &callers).await?;

    // Route scale: 34 vs 3,212 registered routes, interleaved.
    let mut scale: Vec<Cell> = Vec::new();
    if run.gateway3212.is_some() {
        let primed = primed(&callers, args.payloads.len(), 256, args.target_down).await?;
        eprintln!("measuring route scale ...");
        scale = interleaved(run, &primed, &[Target::Gateway, Target::Gateway3212], args).await;
    }
    // Telemetry cost: off, the default (metrics), metrics + 1 % traces, interleaved.
    let mut telemetry: Vec<Cell> = Vec::new();
    if run.quiet.is_some() {
        let primed = primed(&callers, args.payloads.len() + 2, 256, args.target_down).await?;
        eprintln!("measuring telemetry cost ...");
        let targets = [Target::GatewayQuiet, Target::Gateway, Target::GatewayTraced];
        telemetry = interleaved(run, &primed, &targets, args).await;
    }
    let spans_exported = run.collector.as_ref().map(|c| c.spans().len());
    // Idle as read before the load, peak as read after it.
    let mut memory = gateways_rss(run);
    for m in &mut memory {
        m.idle_kib = idle_rss
            .iter()
            .find(|i| i.target == m.target)
            .and_then(|i| i.idle_kib);
    }

    report::print(
        args,
        &cells,
        &scale,
        &report::TelemetryCost {
            cells: &telemetry,
            spans_exported,
        },
        &memory,
    );

    if let Some(setup) = &run.lookups {
        let (callers, body) =
            primed(&callers, args.payloads.len() + 1, 256, args.target_down).await?;
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
            target_down: args.target_down,
        };
        lookups::run(run, &pki, setup, (routed, body), &options).await?;
    }
    platform_adapter(args, &pki, run).await
}

/// The platform-adapter scenario, if its processes were started.
async fn platform_adapter(args: &Args, pki: &Path, run: &mut Running) -> anyhow::Result<()> {
    let Some(started) = &mut run.platform else {
        return Ok(());
    };
    let options = platform::Options {
        rounds: args.platform_rounds,
        seconds: args.seconds,
        warmup: args.warmup,
        inflight: args.platform_inflight.clone(),
    };
    platform::run(started, pki, &options).await
}
