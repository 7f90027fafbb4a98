//! Two replicas of one region's node on one PostgreSQL, with real processes: 31's node
//! runs twice over a shared store (and its province platform), 11 files too, 44 takes
//! every case. Filings go to both replicas; each scenario files at least 1,000 and ends
//! with every acknowledged case at 44's platform exactly once (counted in its
//! database), the outboxes drained. One replica SIGKILLed mid-load (its claimed entries
//! pass to the other when their lease ends, 10 s here); PostgreSQL itself stopped and restarted
//! mid-load; and both forwarding at once, where the gateway's trail shows each delivery
//! relayed once — no outbox entry was ever attempted by both replicas — and each
//! replica's own trail shows the hand-overs it made, none made by both.
//!
//! `TONGBAN_FAULT_LOAD` sets the filings (default 1,000).

#![allow(clippy::unwrap_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    time::{Duration, Instant},
};

use serde_json::Value;
use tongban_kit::{
    Member,
    testing::{TestFederation, processes, start_with},
};
use tongban_node::portal_client::PortalClient;

use super::faults::{Load, settle};

fn load() -> usize {
    std::env::var("TONGBAN_FAULT_LOAD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// 11, 31 and 44 as processes, 31's store on PostgreSQL with a second replica.
async fn federation() -> TestFederation {
    let mut t = start_with(&["110000", "310000", "440000"], |spec| {
        spec.launch = processes("warn");
        // Replicas share their platform: 31 stands in front of a province platform.
        spec.http_platforms = vec!["31".into()];
        spec.postgres_stores = vec!["31".into()];
    })
    .await;
    assert_eq!(t.fed.add_node_replica("31").await.unwrap(), 1);
    t
}

fn portal(addr: std::net::SocketAddr) -> PortalClient {
    PortalClient::new(format!("http://{addr}"))
}

/// 11's portal and both of 31's replicas'.
fn portals(t: &TestFederation) -> Vec<PortalClient> {
    vec![
        portal(t.fed.node("11").unwrap().portal_addr),
        portal(t.fed.replica("31", 0).unwrap().portal_addr),
        portal(t.fed.replica("31", 1).unwrap().portal_addr),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_sigkilled_mid_load_loses_and_duplicates_nothing() {
    let mut t = federation().await;
    let n = load();
    let load = Load::start_at(&t, "replica-kill", n, portals(&t));
    load.reached(n / 3).await;
    let replica = Member::Replica("31".into(), 1);
    let fault = Instant::now();
    t.fed.kill(&replica).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    t.fed.restart(&replica).await.unwrap();
    let healed = Instant::now();
    let tally = load.finish().await;
    settle(&t, "one of two replicas SIGKILLed", tally, fault, healed, n).await;
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_restarted_mid_load_loses_and_duplicates_nothing() {
    let t = federation().await;
    let n = load();
    let load = Load::start_at(&t, "postgres-restart", n, portals(&t));
    load.reached(n / 3).await;
    let cluster = t.fed.postgres.clone().unwrap();
    let fault = Instant::now();
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.stop())
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::spawn_blocking(move || cluster.start_again())
        .await
        .unwrap()
        .unwrap();
    let healed = Instant::now();
    let tally = load.finish().await;
    settle(&t, "PostgreSQL stopped 3 s", tally, fault, healed, n).await;
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_replicas_forward_at_once_and_no_entry_is_in_flight_twice() {
    let t = federation().await;
    let n = load();
    let now = Instant::now();
    let load = Load::start_at(&t, "two-replicas", n, portals(&t)[1..].to_vec());
    let tally = load.finish().await;
    let acknowledged = tally.acknowledged.clone();
    settle(&t, "two replicas forwarding", tally, now, now, n).await;

    // The gateway relayed each of 31's deliveries once: no entry was attempted twice.
    let relayed = tally_keys(&t.dir.path().join("gateway-audit.log"), |r| {
        r["method"] == "DeliverApplication" && r["caller"] == "31"
    });
    let twice: Vec<_> = relayed.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "deliveries relayed more than once: {twice:?}"
    );
    let expected: BTreeSet<String> = acknowledged
        .iter()
        .map(|case| format!("deliver:{case}"))
        .collect();
    assert_eq!(relayed.keys().cloned().collect::<BTreeSet<_>>(), expected);

    // Each replica's own trail: both handed over, never the same case.
    let handed = |file: &str| -> BTreeSet<String> {
        tally_keys(&t.dir.path().join(file), |r| {
            r["event"] == "handed_over" && r["kind"] == "deliver"
        })
        .into_keys()
        .collect()
    };
    let (first, second) = (handed("node-31-audit.log"), handed("node-31-1-audit.log"));
    println!(
        "two replicas forwarding: {} deliveries relayed once each; replica 0 handed over {}, replica 1 {}",
        relayed.len(),
        first.len(),
        second.len()
    );
    assert!(
        !first.is_empty() && !second.is_empty(),
        "both replicas forward"
    );
    assert!(
        first.is_disjoint(&second),
        "a case handed over by both replicas"
    );
    assert_eq!(first.len() + second.len(), n);
    t.shutdown().await;
}

/// Records of a trail that `keep` selects, counted by their idempotency key (gateway)
/// or case (node).
fn tally_keys(trail: &Path, keep: impl Fn(&Value) -> bool) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in std::fs::read_to_string(trail).unwrap().lines() {
        let Some(json) = line.splitn(3, '\t').nth(2) else {
            continue;
        };
        let record: Value = serde_json::from_str(json).unwrap();
        if record.get("checkpoint").is_some() || !keep(&record) {
            continue;
        }
        let key = record["idempotency_key"]
            .as_str()
            .or(record["case"].as_str())
            .unwrap_or_default()
            .to_owned();
        *counts.entry(key).or_default() += 1;
    }
    counts
}
