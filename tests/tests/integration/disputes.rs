//! Disputes of wrong data (异议处理) across three regions through a real gateway: a
//! Guangdong resident files at Shanghai's window (31) citing the marriage certificate
//! Beijing (11) issued; the window flags it as wrong; the dispute waits in 11's queue;
//! 11's staff correct it (a new version issued, the old one revoked); the settlement
//! returns to 31's case. 31 counts the dispute by issuing province (raised, settled,
//! time to settle, open); the old license is revoked for every region; a second dispute
//! is confirmed. Bad flags and settlements are refused naming the field.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};
use tongban_kit::testing::{TestFederation, eventually, start};
use tongban_node::platform::embedded::NewLicense;
use tongban_proto::v1::VerdictOutcome;

use super::recognition::{gateway_as, household_transfer, license_of, lookup};

const WAIT: Duration = Duration::from_secs(30);

async fn post(t: &TestFederation, node: &str, path: &str, body: Value) -> (u16, Value) {
    let operator = &t.fed.node(node).unwrap().operator;
    let body = bytes::Bytes::from(serde_json::to_vec(&body).unwrap());
    let answer = operator.send("POST", path, body).await.unwrap();
    (answer.status, answer.body)
}

/// `tongban operator <command…> --member <node's config>` as the kit's operator.
fn cli(t: &TestFederation, node: &str, command: &[&str]) -> String {
    let config = &t.fed.node(node).unwrap().config_path;
    super::operators::operator_cli(t, config, tongban_kit::config::pki::OPERATOR, command)
}

async fn metrics(t: &TestFederation, node: &str) -> String {
    let text = t
        .fed
        .node(node)
        .unwrap()
        .admin
        .get("/metrics")
        .await
        .unwrap()
        .body;
    text.as_str().unwrap().to_owned()
}

fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispute_goes_from_a_window_to_the_issuer_and_its_settlement_comes_back() {
    let t = start(&["110000", "310000", "440000"]).await;
    let applicant = t.residents("44")[1].clone();
    let mc = license_of(&t, "11", applicant.id.as_str(), "marriage_certificate").await;
    let n31 = t.fed.node("31").unwrap();
    let filed = n31
        .portal
        .file(&household_transfer(&applicant, &mc))
        .await
        .unwrap();
    assert_eq!(filed.status, 201, "{}", filed.body);
    let case = filed.body["case_number"].as_str().unwrap().to_owned();
    let token = filed.body["status_token"].as_str().unwrap().to_owned();

    // Bad flags are refused, naming the field; nothing is sent.
    let path = format!("/cases/{case}/disputes");
    for (body, field) in [
        (
            json!({"subject": "license", "license_id": "110000-MC-0000001", "reason": "错"}),
            "license_id",
        ),
        (
            json!({"subject": "license", "license_id": mc, "reason": " "}),
            "reason",
        ),
        (json!({"subject": "passport", "reason": "错"}), "subject"),
    ] {
        let (status, answer) = post(&t, "31", &path, body).await;
        assert_eq!(
            (status, answer["error"]["field"].as_str()),
            (422, Some(field)),
            "{answer}"
        );
    }
    let (status, _) = post(
        &t,
        "31",
        "/cases/310000-20261201-09999999/disputes",
        json!({"subject": "identity", "reason": "错"}),
    )
    .await;
    assert_eq!(status, 404);

    // 31's window flags the marriage certificate 11 issued.
    let reason = "登记日期与婚姻登记档案不符";
    let (status, raised) = post(
        &t,
        "31",
        &path,
        json!({"subject": "license", "license_id": mc, "reason": reason}),
    )
    .await;
    assert_eq!(status, 201, "{raised}");
    let id = raised["dispute"]["dispute_id"].as_str().unwrap().to_owned();
    assert_eq!(id, format!("{case}:1"));
    assert_eq!(raised["dispute"]["counterpart"], mc[..6].to_owned());

    // It waits in 11's queue (received, open), with the holder never named.
    let n11 = t.fed.node("11").unwrap();
    let queued = eventually(WAIT, "the dispute in 11's queue", || async {
        let queue = n11.operator.get("/disputes?role=received").await.ok()?.body;
        let d = queue["disputes"]
            .as_array()?
            .iter()
            .find(|d| d["dispute_id"] == id.as_str())?
            .clone();
        Some((d, queue))
    })
    .await;
    assert_eq!(queued.0["counterpart"], "310000");
    assert_eq!(queued.0["reason"], reason);
    assert_eq!(queued.0["data"], "marriage_certificate");
    assert!(queued.0["outcome"].is_null());
    assert!(!queued.1.to_string().contains(applicant.id.as_str()));
    let open_at_11 = metrics(&t, "11").await;
    assert_eq!(
        sample(
            &open_at_11,
            "tongban_node_disputes_open{",
            &["role=\"received\"", "counterpart=\"31\""]
        ),
        1.0
    );

    // 11's staff correct it: a new version issued to the same holder, the old revoked.
    let key = n11.store.id_hash_key().await.unwrap();
    let old = n11
        .platform
        .licenses_of_resident(&applicant.id, &key)
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.license_id == mc)
        .unwrap();
    let new = n11
        .platform
        .issue_license(
            NewLicense {
                holder: applicant.id.clone(),
                holder_name: applicant.name.clone(),
                license_type: "marriage_certificate".into(),
                issuing_region: old.issuing_region.clone(),
                fields: old.fields.clone(),
                valid_from: "2024-05-21".into(),
                valid_until: None,
            },
            key.into(),
        )
        .await
        .unwrap();
    let settle = format!("/disputes/310000/{id}/settle");
    let (status, bad) = post(
        &t,
        "11",
        &settle,
        json!({"outcome": "corrected", "note": "登记日期已更正"}),
    )
    .await;
    assert_eq!(
        (status, bad["error"]["field"].as_str()),
        (422, Some("corrected_license_id")),
        "{bad}"
    );
    let (status, settled) = post(
        &t,
        "11",
        &settle,
        json!({"outcome": "corrected",
        "note": "登记日期已更正", "corrected_license_id": new.license_id}),
    )
    .await;
    assert_eq!(status, 200, "{settled}");
    let (status, _) = post(
        &t,
        "11",
        &settle,
        json!({"outcome": "confirmed", "note": "再次"}),
    )
    .await;
    assert_eq!(status, 409);

    // The settlement reaches 31's case; the citizen reads it with the case.
    let status = eventually(WAIT, "the settlement at 31", || async {
        let s = n31.portal.status_with_token(&case, &token).await.ok()?.body;
        (s["disputes"][0]["outcome"] == "corrected").then_some(s)
    })
    .await;
    let d = &status["disputes"][0];
    assert_eq!(d["corrected_license_id"], new.license_id.as_str(), "{d}");
    assert_eq!(d["note"], "登记日期已更正");

    // The old version is revoked for every region.
    let mut client = gateway_as(&t, "44").await;
    let verdict = eventually(WAIT, "the old version revoked", || async {
        let v = lookup(
            &mut gateway_as(&t, "44").await,
            &mc,
            "marriage_certificate",
            "household-transfer",
            applicant.id.as_str(),
        )
        .await;
        (v.outcome == VerdictOutcome::Revoked as i32).then_some(v)
    })
    .await;
    assert_eq!(verdict.outcome, VerdictOutcome::Revoked as i32);
    let fresh = lookup(
        &mut client,
        &new.license_id,
        "marriage_certificate",
        "household-transfer",
        applicant.id.as_str(),
    )
    .await;
    assert_eq!(
        fresh.outcome,
        VerdictOutcome::Recognized as i32,
        "{fresh:?}"
    );

    // A second dispute, about the applicant's identity (asserted by 44), flagged and
    // confirmed with the operator's CLI, as a window's and the issuer's staff run it.
    let flagged = cli(
        &t,
        "31",
        &[
            "flag-dispute",
            &case,
            "--applicant-identity",
            "--reason",
            "姓名与户籍登记不一致",
        ],
    );
    let second: Value = serde_json::from_str(&flagged).unwrap();
    let second_id = second["dispute"]["dispute_id"].as_str().unwrap().to_owned();
    assert_eq!(second_id, format!("{case}:2"));
    eventually(WAIT, "the second dispute at 44", || async {
        let queue: Value = serde_json::from_str(&cli(&t, "44", &["disputes"])).ok()?;
        queue["disputes"]
            .as_array()?
            .iter()
            .any(|d| d["dispute_id"] == second_id.as_str())
            .then_some(())
    })
    .await;
    let settled = cli(
        &t,
        "44",
        &[
            "settle-dispute",
            "310000",
            &second_id,
            "--confirmed",
            "--note",
            "经核查登记无误",
        ],
    );
    assert!(settled.contains("\"confirmed\""), "{settled}");
    eventually(WAIT, "both settled at 31", || async {
        let s = n31.portal.status_with_token(&case, &token).await.ok()?.body;
        let outcomes: Vec<_> = s["disputes"]
            .as_array()?
            .iter()
            .map(|d| d["outcome"].clone())
            .collect();
        (outcomes == [json!("corrected"), json!("confirmed")]).then_some(())
    })
    .await;

    // 31 counted them by issuing province: raised, settled, the time it took, none open.
    let text = metrics(&t, "31").await;
    assert_eq!(
        sample(
            &text,
            "tongban_node_disputes_raised_total{",
            &["issuer=\"11\"", "data=\"marriage_certificate\""]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "tongban_node_disputes_raised_total{",
            &["issuer=\"44\"", "data=\"identity\""]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "tongban_node_disputes_settled_total{",
            &["issuer=\"11\"", "outcome=\"corrected\""]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "tongban_node_disputes_settled_total{",
            &["issuer=\"44\"", "outcome=\"confirmed\""]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "tongban_node_dispute_resolution_seconds_count{",
            &["issuer=\"11\""]
        ),
        1.0
    );
    assert_eq!(
        sample(&text, "tongban_node_disputes_open{", &["role=\"raised\""]),
        0.0
    );
    let text = metrics(&t, "11").await;
    assert_eq!(
        sample(&text, "tongban_node_disputes_open{", &["role=\"received\""]),
        0.0
    );

    // The console's responsibility list shows the disputed answer beside 11's supply.
    let (addr, _proxy) = super::console::operator_proxy(&t).await;
    let console = tongban_node::portal_client::PortalClient::new(format!("http://{addr}"));
    let row = eventually(WAIT, "the console's disputed count", || async {
        let d = super::console::data(&console).await;
        let row = d["supply"]
            .as_array()?
            .iter()
            .find(|r| r["region"] == "11" && r["data"] == "marriage_certificate")?
            .clone();
        (row["disputed"] == 1.0).then_some(row)
    })
    .await;
    assert!(row["disputed_share"].as_f64().unwrap() > 0.0, "{row}");
    t.shutdown().await;
}
