//! Revocations through the gateways' shared revocation log: three gateway replicas
//! behind one address (a TCP proxy, as a load balancer puts them), the nodes knowing
//! only that address. A license cached at every replica — single lookups and its
//! holder's list — and revoked at its issuing node answers "revoked" at all three once
//! the node's revoke endpoint says "published"; over 100 revocations the time from that
//! acknowledgement to the last replica answering "revoked" is measured (p50, p99; the
//! goal is p99 ≤ 1 s); a replica restarted afterwards starts with every revocation.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};
use tongban_kit::testing::SigningChannel;

use serde_json::json;
use tongban_kit::{
    Member,
    testing::{TestFederation, eventually, start_with},
};
use tongban_node::portal_client::PortalClient;
use tongban_proto::v1::{
    ListLicensesRequest, LookupPurpose, VerdictOutcome, gateway_client::GatewayClient,
};

use super::recognition::{client_at, license_of, lookup};

const REVOCATIONS: usize = 100;
const MATERIAL: &str = "household_register";
const ONE_THING: &str = "household-transfer";

async fn federation() -> TestFederation {
    start_with(&["310000", "440000"], |spec| {
        spec.gateways = 3;
        spec.shared_revocation_log = true;
        spec.gateways_behind_one_address = true;
        spec.seed_residents = REVOCATIONS as u32;
    })
    .await
}

/// A client of region 31 at each replica's own address.
async fn replicas(t: &TestFederation) -> Vec<GatewayClient<SigningChannel>> {
    let mut clients = Vec::new();
    for g in &t.fed.gateways {
        clients.push(client_at(t, &format!("https://{}", g.federation_addr), "31").await);
    }
    clients
}

async fn outcome(client: &GatewayClient<SigningChannel>, license: &str, holder: &str) -> i32 {
    lookup(&mut client.clone(), license, MATERIAL, ONE_THING, holder)
        .await
        .outcome
}

/// The verdict the holder's list gives `license`.
async fn listed(client: &GatewayClient<SigningChannel>, license: &str, holder: &str) -> i32 {
    let list = client
        .clone()
        .list_licenses(ListLicensesRequest {
            holder_id_number: holder.to_owned(),
            issuing_region: "440000".into(),
            purpose: Some(LookupPurpose {
                applicant_request: Some(tongban_proto::rules::consent::request(
                    "portal",
                    1_780_000_000_000,
                )),
                one_thing_id: ONE_THING.into(),
                case_number: "310000-20261203-00000001".into(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    list.licenses
        .iter()
        .find(|v| v.license_id == license)
        .map(|v| v.outcome)
        .unwrap_or_else(|| panic!("{license} missing from its holder's list"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_acknowledged_at_one_address_reaches_every_replica() {
    let mut t = federation().await;
    let clients = replicas(&t).await;
    let residents = t.residents("44");
    let mut licenses = Vec::new();
    for resident in residents.iter().take(REVOCATIONS) {
        let holder = resident.id.as_str().to_owned();
        licenses.push((license_of(&t, "44", &holder, MATERIAL).await, holder));
    }
    // Cached at every replica: the single lookup, and the holder's list.
    for (license, holder) in &licenses {
        for client in &clients {
            assert_eq!(
                outcome(client, license, holder).await,
                VerdictOutcome::Recognized as i32
            );
            assert_eq!(
                listed(client, license, holder).await,
                VerdictOutcome::Recognized as i32
            );
        }
    }
    let admin = &t.fed.node("44").unwrap().operator;
    let mut lags = Vec::new();
    for (i, (license, holder)) in licenses.iter().enumerate() {
        let answer = admin
            .post_json(
                &format!("/licenses/{license}/revoke"),
                &json!({"reason": "moved away"}),
            )
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["state"], "published", "{}", answer.body);
        assert_eq!(answer.body["log_sequence"], i as u64 + 1, "{}", answer.body);
        let acknowledged = Instant::now();
        // Every replica, each answering revoked for the lookup and (for a sample) the
        // list; the lag is the last replica's.
        let mut pending: Vec<usize> = (0..clients.len()).collect();
        while !pending.is_empty() {
            let mut still = Vec::new();
            for &r in &pending {
                if outcome(&clients[r], license, holder).await != VerdictOutcome::Revoked as i32 {
                    still.push(r);
                }
            }
            pending = still;
            assert!(
                acknowledged.elapsed() < Duration::from_secs(15),
                "{license}: replicas {pending:?} still not revoked"
            );
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        lags.push(acknowledged.elapsed());
        if i % 10 == 0 {
            for client in &clients {
                assert_eq!(
                    listed(client, license, holder).await,
                    VerdictOutcome::Revoked as i32,
                    "{license}: a cached holder list still recognizes it"
                );
            }
        }
    }
    lags.sort();
    println!(
        "revocation log: {REVOCATIONS} revocations, acknowledgement to the last of 3 replicas answering revoked: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&lags, 0.50).as_secs_f64() * 1e3,
        percentile(&lags, 0.99).as_secs_f64() * 1e3,
        lags[lags.len() - 1].as_secs_f64() * 1e3,
    );
    let front = t.fed.gateway_front.as_ref().unwrap().connections();
    println!("connections through the front address, per replica: {front:?}");

    // A replica restarted afterwards starts with every revocation: its log position
    // is the last before it reports ready, and every license answers revoked.
    let restarted = Member::Gateway(1);
    t.fed.stop(&restarted).await.unwrap();
    t.fed.restart(&restarted).await.unwrap();
    let admin = PortalClient::new(format!("http://{}", t.fed.gateways[1].admin_addr.unwrap()));
    eventually(
        Duration::from_secs(10),
        "the restarted replica ready",
        || async { (admin.get("/readyz").await.ok()?.status == 200).then_some(()) },
    )
    .await;
    let metrics = admin.get("/metrics").await.unwrap();
    let text = metrics.body.as_str().unwrap();
    let sequence = text
        .lines()
        .find(|l| l.starts_with("tongban_gateway_revocation_log_sequence "))
        .unwrap_or_else(|| panic!("no log sequence in\n{text}"));
    assert_eq!(
        sequence
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<f64>()
            .unwrap(),
        REVOCATIONS as f64,
        "{sequence}"
    );
    let client = client_at(
        &t,
        &format!("https://{}", t.fed.gateways[1].federation_addr),
        "31",
    )
    .await;
    for (license, holder) in &licenses {
        assert_eq!(
            outcome(&client, license, holder).await,
            VerdictOutcome::Revoked as i32
        );
    }
    eventually(
        Duration::from_secs(5),
        "restarted replica ready",
        || async { (admin.get("/readyz").await.ok()?.status == 200).then_some(()) },
    )
    .await;
    t.shutdown().await;
}
