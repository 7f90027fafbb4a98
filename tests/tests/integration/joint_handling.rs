//! 多地联办 through real processes: a household transfer from Shanghai (310115) to
//! Shenzhen (440305) filed at a Beijing window is one case with two parts, the transfer
//! out handled by 31 and the transfer in by 44 once the transfer out is approved. Nodes
//! run as processes (a kill is a SIGKILL); 31 and 44 stand in front of province
//! platforms over HTTP whose clerks decide through their API.
//!
//! Approved at both, the case is approved, while 44's node is killed before the
//! transfer in reaches it and again before its decision is pushed: nothing is lost and
//! 44's platform holds the part once. Refused at 31, the citizen reads which part was
//! refused and why, and the transfer in never starts.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};
use tongban_kit::testing::{TestFederation, eventually, processes, start_with};
use tongban_node::portal_client::PortalClient;

// After 44 restarts, the transfer in waits for 11's outbox retry and the gateway's
// reconnection, both backed off while 44 was down: at times more than a minute.
const WAIT: Duration = Duration::from_secs(180);

async fn federation() -> TestFederation {
    start_with(&["110000", "310000", "440000"], |spec| {
        spec.launch = processes("warn");
        spec.http_platforms = vec!["31".into(), "44".into()];
        spec.auto_approve_after = None;
    })
    .await
}

fn transfer(t: &TestFederation, resident: usize) -> Value {
    let r = &t.residents("31")[resident];
    json!({
        "one_thing_id": "household-transfer",
        "mode": "joint",
        "applicant": {"id_number": r.id.as_str(), "name": r.name, "phone": "13800138000"},
        "form": {
            "move_from_region": "310115", "move_to_region": "440305",
            "move_to_address": "深圳市南山区科技园路1号", "reason": "就业落户",
            "contact_phone": "13800138000"
        }
    })
}

/// Files at 11; the case number and its status token.
async fn file(t: &TestFederation, resident: usize) -> (String, String, Value) {
    let n11 = t.fed.node("11").unwrap();
    let receipt = n11.portal.file(&transfer(t, resident)).await.unwrap();
    assert_eq!(receipt.status, 201, "{}", receipt.body);
    let case = receipt.body["case_number"].as_str().unwrap().to_owned();
    let token = receipt.body["status_token"].as_str().unwrap().to_owned();
    (case, token, receipt.body)
}

/// The case at 11's portal once `ready` holds for it.
async fn status_when(
    portal: &PortalClient,
    case: &str,
    token: &str,
    what: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    eventually(WAIT, what, || async {
        let status = portal.status_with_token(case, token).await.ok()?;
        ready(&status.body).then_some(status.body)
    })
    .await
}

fn part<'a>(status: &'a Value, id: &str) -> &'a Value {
    status["parts"]
        .as_array()
        .and_then(|parts| parts.iter().find(|p| p["id"] == id))
        .unwrap_or_else(|| panic!("no part {id}: {status}"))
}

/// Waits until the platform of `prefix` holds `case`; a clerk decides it.
async fn decide(t: &TestFederation, prefix: &str, case: &str, steps: &[(&str, &str)]) {
    let platform = t.fed.platform(prefix).unwrap();
    eventually(WAIT, &format!("{case} at {prefix}'s platform"), || async {
        let waiting = platform.clerk.get("/clerk/v1/cases").await.ok()?;
        waiting.body.to_string().contains(case).then_some(())
    })
    .await;
    for (action, reason) in steps {
        let answer = platform.decide(case, action, reason).await.unwrap();
        assert_eq!(answer.status, 200, "{action} at {prefix}: {}", answer.body);
    }
}

async fn rows_at_platform(t: &TestFederation, prefix: &str, case: &str) -> i64 {
    let platform = t.fed.platform(prefix).unwrap();
    crate::platforms::rows_of(&platform.files.database, case).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joint_case_is_approved_when_both_parts_are_while_44s_node_is_killed_twice() {
    let mut t = federation().await;
    let (case, token, receipt) = file(&t, 1).await;
    // The receipt names both parts, each with its region and promise; the transfer in
    // waits for the transfer out.
    assert_eq!(receipt["mode"], "joint", "{receipt}");
    assert_eq!(part(&receipt, "move_out")["handling_region"], "310115");
    assert_eq!(part(&receipt, "move_in")["handling_region"], "440305");
    assert_eq!(part(&receipt, "move_in")["stage"], "waiting");
    let (out_promise, in_promise) = (
        part(&receipt, "move_out")["promised_date"]
            .as_str()
            .unwrap()
            .to_owned(),
        part(&receipt, "move_in")["promised_date"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    assert!(out_promise < in_promise, "{receipt}");
    assert_eq!(receipt["promised_date"], in_promise.as_str());

    // 44's node is down when the transfer out is approved at 31.
    decide(&t, "31", &case, &[("accept", "")]).await;
    let portal = t.fed.node("11").unwrap().portal.clone();
    let status = status_when(&portal, &case, &token, "31 accepted", |s| {
        part(s, "move_out")["stage"] == "accepted"
    })
    .await;
    assert_eq!(status["stage"], "in_review", "{status}");
    assert_eq!(part(&status, "move_in")["stage"], "waiting");
    let n44 = tongban_kit::Member::Node("44".into());
    t.fed.kill(&n44).await.unwrap();
    decide(&t, "31", &case, &[("approve", "准予迁出")]).await;
    let status = status_when(&portal, &case, &token, "the transfer in started", |s| {
        part(s, "move_out")["stage"] == "approved" && part(s, "move_in")["stage"] == "submitted"
    })
    .await;
    assert_eq!(status["stage"], "in_review", "{status}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(rows_at_platform(&t, "44", &case).await, 0);

    // Once 44's node is back, the transfer in reaches it; 44's clerk decides while its
    // node is down again; after the restart the decision comes back to 11.
    t.fed.restart(&n44).await.unwrap();
    decide(&t, "44", &case, &[("accept", "")]).await;
    status_when(&portal, &case, &token, "44 accepted", |s| {
        part(s, "move_in")["stage"] == "accepted"
    })
    .await;
    t.fed.kill(&n44).await.unwrap();
    decide(&t, "44", &case, &[("approve", "准予迁入")]).await;
    t.fed.restart(&n44).await.unwrap();
    let status = status_when(&portal, &case, &token, "approved", |s| {
        s["stage"] == "approved"
    })
    .await;
    assert_eq!(part(&status, "move_in")["stage"], "approved", "{status}");
    assert_eq!(part(&status, "move_out")["stage"], "approved", "{status}");
    assert!(
        part(&status, "move_in")["handling_reference"].is_string(),
        "{status}"
    );

    // Each part is held once where it is handled, and never at the other region.
    assert_eq!(rows_at_platform(&t, "31", &case).await, 1);
    assert_eq!(rows_at_platform(&t, "44", &case).await, 1);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_refused_at_31_refuses_the_case_naming_it_and_the_transfer_in_never_starts() {
    let t = federation().await;
    let (case, token, _) = file(&t, 2).await;
    decide(
        &t,
        "31",
        &case,
        &[("accept", ""), ("reject", "户籍信息与迁出地登记不符")],
    )
    .await;
    let portal = t.fed.node("11").unwrap().portal.clone();
    let status = status_when(&portal, &case, &token, "rejected", |s| {
        s["stage"] == "rejected"
    })
    .await;
    let detail = status["detail"].as_str().unwrap();
    assert!(detail.starts_with("户口迁出 (region 310115)"), "{status}");
    assert!(detail.contains("户籍信息与迁出地登记不符"), "{status}");
    assert_eq!(part(&status, "move_out")["stage"], "rejected", "{status}");
    let waiting = part(&status, "move_in");
    assert_eq!(waiting["stage"], "waiting", "{status}");
    assert_eq!(
        waiting["detail"],
        "will not start: 户口迁出 was not approved"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(rows_at_platform(&t, "44", &case).await, 0);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_handled_by_one_node_are_refused_at_the_window() {
    let t = federation().await;
    let mut within = transfer(&t, 3);
    within["form"]["move_to_region"] = "310104".into();
    let answer = t
        .fed
        .node("11")
        .unwrap()
        .portal
        .file(&within)
        .await
        .unwrap();
    assert_eq!(answer.status, 422, "{}", answer.body);
    let text = answer.body.to_string();
    assert!(text.contains("form.move_to_region"), "{text}");
    assert!(
        text.contains("both be handled by region 31's node"),
        "{text}"
    );
    t.shutdown().await;
}
