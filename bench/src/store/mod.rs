//! The node-store scenario: filings and deliveries per second at one node, and CPU per
//! filing, with the origin node's store on SQLite (the default), on PostgreSQL with one
//! node replica, and on PostgreSQL with two replicas (filings spread over both
//! portals), interleaved round by round, each round on a fresh federation so every
//! database starts empty.
//!
//! A round of one configuration: start the federation (`federation`), file a warm-up
//! and wait until it is delivered and the origin's outbox drained (connections made,
//! caches filled), then read the CPU, file the measured batch at a fixed number in
//! flight while 44's platform database is read for the cases arriving, and read the
//! CPU again the moment the last receipted case is there. Filings/s is the batch over
//! the time to its last receipt; deliveries/s the batch over the time until its last
//! case reached 44, both from the first measured filing. CPU per filing is the origin
//! node process(es)' and, on PostgreSQL, every process of the cluster's (postmaster,
//! backends, background and autovacuum workers, ended ones included), from `/proc`,
//! over that window, per receipted filing: a filing's whole life at the origin, its
//! delivery included. The rest of the federation (gateway, 44's node, 31's platform
//! process) does the same work in every configuration; its CPU is shown, not counted.
//!
//! Afterwards each round checks that every receipted case is at 44 once and nothing
//! else is, and that the origin's outbox drained without a dead letter.

mod federation;
mod filings;
mod model;
mod report;

use std::{
    collections::HashSet,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;

pub use model::Options;
use model::{Config, Round, Row, Settled};

/// How long a round's cases may take to reach 44 (from the first filing): a federation
/// that stops delivering ends the round with the cases missing, not the run.
const DELIVERY_LIMIT: Duration = Duration::from_secs(60);

/// How long the origin's outbox may take to show drained once its cases are at 44
/// (the origin marks an entry done after 44 answered).
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Synthetic residents of 44 filed for (the kit's default seed), in turn.
const RESIDENTS: u32 = 20;

/// Runs the scenario in `dir` (a folder per federation under it) and prints its
/// tables and checks.
pub async fn run(options: &Options, bin_dir: &Path, dir: &Path) -> anyhow::Result<()> {
    federation::check_tools(bin_dir)?;
    let filings = Arc::new(filings::filings(RESIDENTS)?);
    let mut rows: Vec<Row> = Config::ALL.into_iter().map(Row::new).collect();
    let started = Instant::now();
    for round in 0..options.rounds {
        // Rotate the order each round so no configuration always runs first or last.
        for i in 0..Config::ALL.len() {
            let config = Config::ALL[(i + round as usize) % Config::ALL.len()];
            eprintln!(
                "node store: round {}/{}, {} ...",
                round + 1,
                options.rounds,
                config.label()
            );
            let folder = federation::folder(dir, config, round);
            let started = federation::start(config, &folder, bin_dir).await?;
            let row = rows
                .iter_mut()
                .find(|r| r.config == config)
                .context("a row per configuration")?;
            let outcome = measure(started, config, round, options, &filings, row).await;
            if let Err(e) = outcome {
                return Err(e.context(format!(
                    "{} in round {} (logs in {})",
                    config.label(),
                    round + 1,
                    folder.display()
                )));
            }
        }
    }
    eprintln!(
        "node store: {} rounds in {:.0} s",
        options.rounds,
        started.elapsed().as_secs_f64()
    );
    report::print(&rows, options);
    Ok(())
}

/// One round of `config` on the federation `started`, recorded in `row`; the
/// federation is shut down at the end, whatever happened.
async fn measure(
    mut started: federation::Started,
    config: Config,
    round: u32,
    options: &Options,
    filings: &Arc<Vec<bytes::Bytes>>,
    row: &mut Row,
) -> anyhow::Result<()> {
    let result = batches(&mut started, config, round, options, filings, row).await;
    started.fed.shutdown().await;
    result
}

async fn batches(
    started: &mut federation::Started,
    config: Config,
    round: u32,
    options: &Options,
    filings: &Arc<Vec<bytes::Bytes>>,
    row: &mut Row,
) -> anyhow::Result<()> {
    let mut arrivals = filings::Arrivals::new(started.target.clone());
    let key = format!("bench-r{}-{}", round + 1, config.key());

    // The warm-up, delivered and drained before anything is read.
    let warm = filings::file(
        &started.portals,
        filings,
        options.warmup,
        options.inflight,
        &format!("{key}-warm"),
    )
    .await;
    let mut acknowledged: HashSet<String> = warm.cases.iter().cloned().collect();
    row.errors += warm.errors;
    row.first_error = row.first_error.take().or(warm.first_error);
    if !arrivals.wait_for(&warm.cases, DELIVERY_LIMIT).await? {
        eprintln!("node store: the warm-up's cases did not all reach 44");
    }
    let drained = outbox_drained(started, DRAIN_LIMIT).await;

    // The measured batch.
    let before = started.pids.snapshot();
    let t0 = Instant::now();
    let (receipted, cases) = tokio::sync::oneshot::channel();
    let filing = async {
        let filed = filings::file(
            &started.portals,
            filings,
            options.filings,
            options.inflight,
            &key,
        )
        .await;
        // The watcher ends when these are all at 44; if it has already given up, the
        // numbers are not needed.
        let _ = receipted.send(filed.cases.clone());
        filed
    };
    let pids = &started.pids;
    let watching = arrivals.wait_for_batch(cases, DELIVERY_LIMIT, || pids.since(&before));
    let (filed, watched) = tokio::join!(filing, watching);
    let (last_case, cpu) = watched?;

    let figures = Round {
        round,
        filed: filed.cases.len() as u64,
        filing_elapsed: filed.elapsed,
        delivered_elapsed: last_case.map(|at| at.saturating_duration_since(t0)),
        cpu,
    };
    eprintln!(
        "  {} filed in {:.2} s, {}, {:.0} µs CPU per filing (node + PostgreSQL)",
        figures.filed,
        figures.filing_elapsed.as_secs_f64(),
        figures.delivered_elapsed.map_or_else(
            || "not all delivered".to_owned(),
            |d| format!("delivered in {:.2} s", d.as_secs_f64())
        ),
        figures.total_us()
    );
    let _ = row.latency.add(&filed.latency);
    row.errors += filed.errors;
    row.first_error = row.first_error.take().or(filed.first_error);
    row.rounds.push(figures);

    // The checks: every receipted case at 44 once, the outbox drained.
    acknowledged.extend(filed.cases.iter().cloned());
    arrivals.poll().await?;
    let (delivered_once, mut problems) = arrivals.check(&acknowledged);
    if let Err(e) = drained {
        problems.push(format!("after the warm-up: {e}"));
    }
    if let Err(e) = outbox_drained(started, DRAIN_LIMIT).await {
        problems.push(e);
    }
    row.settled.push(Settled {
        acknowledged: acknowledged.len() as u64,
        delivered_once,
        problems,
    });
    Ok(())
}

/// Waits until the origin's outbox has nothing pending, for at most `limit`; what is
/// wrong otherwise (entries pending, dead letters, the store unread). Reads the store
/// through the kit's own handle, so only between measurements: on PostgreSQL the query
/// is the cluster's CPU.
async fn outbox_drained(started: &federation::Started, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        let store = &started
            .fed
            .node(federation::ORIGIN)
            .map_err(|e| e.to_string())?
            .store;
        let backlog = store
            .outbox_backlog()
            .await
            .map_err(|e| format!("reading 31's outbox: {e}"))?;
        let pending: i64 = backlog.iter().map(|r| r.pending).sum();
        let dead: i64 = backlog.iter().map(|r| r.dead).sum();
        if dead > 0 {
            return Err(format!("31's outbox holds {dead} dead letters"));
        }
        if pending == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "31's outbox still holds {pending} entries {} s after the last case reached 44",
                limit.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
