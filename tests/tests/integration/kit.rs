//! The test kit itself, used as later fault tests will use it: real child processes,
//! two gateway replicas, SIGKILL and restart of members, and fault proxies on links.
//! Each test ends with every acknowledged case delivered exactly once, counted at the
//! target's platform.

// Test helpers may panic: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

use std::{collections::BTreeSet, time::Duration};

use super::faults::{not_exactly_once, outboxes_drained, platform_rows};
use tongban_kit::testing::{TestFederation, eventually, medical_filing, processes, start_with};
use tongban_kit::{Link, LinkMode, Member};

/// Files a medical registration at 31 for resident `i` of 44; returns its case number.
async fn file_at_31(t: &TestFederation, i: usize) -> String {
    let residents = t.residents("44");
    let n31 = t.fed.node("31").unwrap();
    let receipt = n31
        .portal
        .file(&medical_filing(&residents[i % residents.len()]))
        .await
        .unwrap();
    assert_eq!(receipt.status, 201, "{:?}", receipt.body);
    receipt.body["case_number"].as_str().unwrap().to_owned()
}

/// How many rows 44's platform holds for this case number (counted by the database, so
/// a case taken twice counts 2).
async fn cases_at_44(t: &TestFederation, case: &str) -> usize {
    platform_rows(t, "44").await.get(case).copied().unwrap_or(0)
}

/// Waits until `case` is at 44's platform; then it must be there exactly once.
async fn delivered(t: &TestFederation, case: &str, within: Duration) {
    let rows = eventually(within, &format!("{case} delivered"), || async {
        let rows = cases_at_44(t, case).await;
        (rows > 0).then_some(rows)
    })
    .await;
    assert_eq!(rows, 1, "{case} is at 44's platform {rows} times");
}

/// Once 31 has nothing left to deliver: 44's platform holds each of `acknowledged` in
/// exactly one row, and no other case.
async fn each_exactly_once_at_44(t: &TestFederation, acknowledged: &[&String]) {
    outboxes_drained(t, &["31"], Duration::from_secs(60)).await;
    let acknowledged: BTreeSet<String> = acknowledged.iter().map(|c| (*c).clone()).collect();
    if let Some(wrong) = not_exactly_once(&platform_rows(t, "44").await, &acknowledged) {
        panic!("not each acknowledged case exactly once at 44: {wrong}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_with_two_gateways_survive_sigkills_and_cut_links() {
    let mut t = start_with(&["310000", "440000"], |spec| {
        spec.gateways = 2;
        spec.launch = processes("warn");
        spec.fault_proxies = true;
    })
    .await;
    assert_eq!(t.fed.gateways.len(), 2);

    // Both gateways' links to 44 cut: a filing is receipted and waits in the outbox.
    for gateway in 0..2 {
        t.fed
            .link(&Link::GatewayToNode {
                gateway,
                node: "44".into(),
            })
            .unwrap()
            .set(LinkMode::Cut);
    }
    let first = file_at_31(&t, 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(cases_at_44(&t, &first).await, 0);
    for gateway in 0..2 {
        t.fed
            .link(&Link::GatewayToNode {
                gateway,
                node: "44".into(),
            })
            .unwrap()
            .set(LinkMode::Pass);
    }
    delivered(&t, &first, Duration::from_secs(20)).await;

    // The target SIGKILLed: a case filed meanwhile arrives after its restart.
    t.fed.kill(&Member::Node("44".into())).await.unwrap();
    let second = file_at_31(&t, 1).await;
    t.fed.restart(&Member::Node("44".into())).await.unwrap();
    delivered(&t, &second, Duration::from_secs(20)).await;

    // One gateway SIGKILLed for good: the other carries the next case.
    t.fed.kill(&Member::Gateway(0)).await.unwrap();
    let third = file_at_31(&t, 2).await;
    delivered(&t, &third, Duration::from_secs(30)).await;
    // Restarted, it serves again (its readiness probe answers).
    t.fed.restart(&Member::Gateway(0)).await.unwrap();

    // The origin SIGKILLed right after a receipt: the case is still delivered.
    let fourth = file_at_31(&t, 3).await;
    t.fed.kill(&Member::Node("31".into())).await.unwrap();
    t.fed.restart(&Member::Node("31".into())).await.unwrap();
    delivered(&t, &fourth, Duration::from_secs(20)).await;

    for case in [&first, &second, &third, &fourth] {
        assert_eq!(cases_at_44(&t, case).await, 1, "{case}");
    }
    each_exactly_once_at_44(&t, &[&first, &second, &third, &fourth]).await;
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_link_holds_calls_until_it_heals_in_process() {
    let t = start_with(&["310000", "440000"], |spec| {
        spec.fault_proxies = true;
    })
    .await;
    let link = t
        .fed
        .link(&Link::NodeToGateway {
            node: "31".into(),
            gateway: 0,
        })
        .unwrap();
    // Delay first: calls pass, slowly.
    link.set(LinkMode::Delay(Duration::from_millis(50)));
    let slow = file_at_31(&t, 0).await;
    delivered(&t, &slow, Duration::from_secs(20)).await;
    // Blackholed: packets vanish; the case waits, then goes through once healed.
    link.set(LinkMode::Blackhole);
    let held = file_at_31(&t, 1).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(cases_at_44(&t, &held).await, 0);
    link.set(LinkMode::Pass);
    delivered(&t, &held, Duration::from_secs(40)).await;
    each_exactly_once_at_44(&t, &[&slow, &held]).await;
    t.shutdown().await;
}
