//! Fault tests under load, with real processes (SIGKILL is a real SIGKILL, a crash
//! point a real abort): each scenario files a bounded load from two origins (11 and 31)
//! to 44, injects its fault mid-load, heals it, and ends with every acknowledged case
//! delivered exactly once, counted at 44's platform. Each prints its counts and how long
//! the federation took to deliver everything once the fault was healed.
//!
//! `TONGBAN_FAULT_LOAD` sets the filings per scenario (default 240; the closing notes
//! quote runs at 1,000).

#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::task::JoinSet;
use tongban_node::{
    crash_point::{AFTER_PLATFORM_SUBMIT, CRASH_AT},
    portal_client::PortalClient,
};
use tongban_tests::{
    Link, LinkMode, Member, TestFederation, eventually, medical_filing, processes, start_with,
};

const ORIGINS: [&str; 2] = ["11", "31"];
/// Filings in flight at once, over both origins.
const CONCURRENCY: usize = 8;

fn load_size() -> usize {
    std::env::var("TONGBAN_FAULT_LOAD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(240)
}

/// What a load saw: the case numbers receipted (acknowledged), and the portal calls that
/// failed and were retried with the same idempotency key.
#[derive(Default)]
struct Tally {
    acknowledged: BTreeSet<String>,
    retried_calls: usize,
}

/// A running load: `n` filings for residents of 44, alternating origins, each retried
/// with its idempotency key until receipted (a citizen's portal does the same).
struct Load {
    tally: Arc<Mutex<Tally>>,
    filed: Arc<std::sync::atomic::AtomicUsize>,
    tasks: JoinSet<()>,
}

impl Load {
    fn start(t: &TestFederation, scenario: &str, n: usize) -> Self {
        let residents = t.residents("44");
        let portals: Vec<PortalClient> = ORIGINS
            .iter()
            .map(|o| PortalClient::new(format!("http://{}", t.fed.node(o).unwrap().portal_addr)))
            .collect();
        let tally = Arc::new(Mutex::new(Tally::default()));
        let filed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        for _ in 0..CONCURRENCY {
            let (portals, residents) = (portals.clone(), residents.clone());
            let (tally, filed, next) = (tally.clone(), filed.clone(), next.clone());
            let scenario = scenario.to_owned();
            tasks.spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    let portal = &portals[i % portals.len()];
                    let filing = medical_filing(&residents[i % residents.len()]);
                    let key = format!("{scenario}-{i}");
                    let deadline = Instant::now() + Duration::from_secs(120);
                    loop {
                        match portal.file_with_key(&filing, &key).await {
                            Ok(r) if r.status == 201 || r.status == 200 => {
                                let case = r.body["case_number"].as_str().unwrap().to_owned();
                                tally.lock().unwrap().acknowledged.insert(case);
                                filed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                break;
                            }
                            Ok(r) if r.status < 500 => {
                                panic!("filing {key} refused: {} {}", r.status, r.body)
                            }
                            _ => {
                                tally.lock().unwrap().retried_calls += 1;
                                assert!(Instant::now() < deadline, "{key} never receipted");
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                        }
                    }
                }
            });
        }
        Self {
            tally,
            filed,
            tasks,
        }
    }

    /// Waits until `count` filings are receipted (to inject a fault mid-load).
    async fn reached(&self, count: usize) {
        eventually(Duration::from_secs(120), "load progress", || async {
            (self.filed.load(std::sync::atomic::Ordering::Relaxed) >= count).then_some(())
        })
        .await;
    }

    async fn finish(mut self) -> Tally {
        while let Some(done) = self.tasks.join_next().await {
            done.unwrap();
        }
        Arc::try_unwrap(self.tally)
            .ok()
            .unwrap()
            .into_inner()
            .unwrap()
    }
}

/// Cases 44's platform holds from the load's origins.
async fn platform_cases(t: &TestFederation) -> BTreeSet<String> {
    let db = t.dir.path().join("platform-44.db");
    tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        let mut stmt = conn
            .prepare("SELECT case_number FROM cases WHERE origin_region IN ('110000', '310000')")
            .unwrap();
        stmt.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .collect::<Result<BTreeSet<_>, _>>()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Waits until every acknowledged case is at 44's platform, then checks that nothing
/// else is (no case created twice under another number); prints the scenario's counts.
async fn settle(t: &TestFederation, scenario: &str, tally: Tally, healed: Instant) {
    let acknowledged = tally.acknowledged.len();
    let delivered = eventually(
        Duration::from_secs(180),
        "every acknowledged case delivered",
        || {
            let wanted = &tally.acknowledged;
            async move {
                let at_44 = platform_cases(t).await;
                wanted.is_subset(&at_44).then_some(at_44)
            }
        },
    )
    .await;
    let recovery = healed.elapsed();
    assert_eq!(
        delivered, tally.acknowledged,
        "44 holds exactly the acknowledged cases"
    );
    println!(
        "{scenario}: filed {} acknowledged {acknowledged} delivered {} duplicates 0 \
         (portal calls retried {}), all delivered {:.1} s after the fault healed",
        load_size(),
        delivered.len(),
        tally.retried_calls,
        recovery.as_secs_f64()
    );
    assert_eq!(acknowledged, load_size(), "every filing was receipted");
}

async fn federation(gateways: usize, fault_proxies: bool) -> TestFederation {
    start_with(&["110000", "310000", "440000"], |spec| {
        spec.gateways = gateways;
        spec.launch = processes("warn");
        spec.fault_proxies = fault_proxies;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_sigkilled_mid_load_loses_and_duplicates_nothing() {
    let mut t = federation(1, false).await;
    let n = load_size();
    let load = Load::start(&t, "target-kill", n);
    load.reached(n / 3).await;
    let target = Member::Node("44".into());
    t.fed.kill(&target).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    t.fed.restart(&target).await.unwrap();
    let healed = Instant::now();
    let tally = load.finish().await;
    settle(&t, "target SIGKILLed and restarted", tally, healed).await;
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_sigkilled_mid_load_loses_and_duplicates_nothing() {
    let mut t = federation(1, false).await;
    let n = load_size();
    let load = Load::start(&t, "origin-kill", n);
    load.reached(n / 3).await;
    let origin = Member::Node("31".into());
    t.fed.kill(&origin).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    t.fed.restart(&origin).await.unwrap();
    let healed = Instant::now();
    let tally = load.finish().await;
    settle(&t, "origin SIGKILLed and restarted", tally, healed).await;
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_sigkilled_mid_load_loses_and_duplicates_nothing() {
    let mut t = federation(1, false).await;
    let n = load_size();
    let load = Load::start(&t, "gateway-kill", n);
    load.reached(n / 3).await;
    t.fed.kill(&Member::Gateway(0)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    t.fed.restart(&Member::Gateway(0)).await.unwrap();
    let healed = Instant::now();
    let tally = load.finish().await;
    settle(&t, "gateway SIGKILLed and restarted", tally, healed).await;
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_gateways_sigkilled_for_good_loses_and_duplicates_nothing() {
    let mut t = federation(2, false).await;
    let n = load_size();
    let load = Load::start(&t, "replica-kill", n);
    load.reached(n / 3).await;
    t.fed.kill(&Member::Gateway(0)).await.unwrap();
    let healed = Instant::now();
    let tally = load.finish().await;
    settle(&t, "one of two gateways SIGKILLed for good", tally, healed).await;
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_to_the_target_cut_then_blackholed_loses_and_duplicates_nothing() {
    let t = federation(1, true).await;
    let n = load_size();
    let link = t
        .fed
        .link(&Link::GatewayToNode {
            gateway: 0,
            node: "44".into(),
        })
        .unwrap();
    let load = Load::start(&t, "link-faults", n);
    load.reached(n / 4).await;
    link.set(LinkMode::Cut);
    tokio::time::sleep(Duration::from_secs(2)).await;
    link.set(LinkMode::Pass);
    load.reached(n / 2).await;
    // Packets vanish, no RST: calls time out at their deadlines, not at once.
    link.set(LinkMode::Blackhole);
    tokio::time::sleep(Duration::from_secs(3)).await;
    link.set(LinkMode::Pass);
    let healed = Instant::now();
    let tally = load.finish().await;
    settle(
        &t,
        "gateway-to-target link cut, then blackholed",
        tally,
        healed,
    )
    .await;
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_platform_submit_and_key_record_creates_nothing_twice() {
    let mut t = federation(1, false).await;
    let target = Member::Node("44".into());
    // 44 aborts right after its platform takes the first case delivered to it, before
    // the delivery's key is recorded.
    t.fed.stop(&target).await.unwrap();
    t.fed
        .set_node_env("44", vec![(CRASH_AT.into(), AFTER_PLATFORM_SUBMIT.into())]);
    t.fed.restart(&target).await.unwrap();
    let n = load_size();
    let load = Load::start(&t, "crash-point", n);
    assert!(
        t.fed
            .wait_exit(&target, Duration::from_secs(60))
            .await
            .unwrap(),
        "44 reached its crash point"
    );
    let taken = platform_cases(&t).await;
    assert_eq!(
        taken.len(),
        1,
        "the platform took one case before the crash"
    );
    t.fed.set_node_env("44", Vec::new());
    t.fed.restart(&target).await.unwrap();
    let healed = Instant::now();
    let tally = load.finish().await;
    settle(
        &t,
        "crash between platform submit and key record",
        tally,
        healed,
    )
    .await;
    t.shutdown().await;
}
