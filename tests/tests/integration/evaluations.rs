//! Citizens' evaluations (好差评) through a real federation: a decided case rated at the
//! portal where it was filed reaches the handling region through the gateway (signed by
//! the filing region, kept there as evidence); a poor rating opens a follow-up due in
//! the handling region's working days; the filing node counts the rating by handling
//! province, the handling node the follow-up; one evaluation per case, none before the
//! decision, bad ratings named.

// Test helpers may panic: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};
use tongban_kit::testing::{TestFederation, eventually, medical_filing, start};
use tongban_node::portal_client::PortalClient;
use tongban_proto::rules::calendar::{business_now, working_days::Calendar};

const WAIT: Duration = Duration::from_secs(30);

async fn evaluate(portal: &PortalClient, case: &str, token: &str, body: Value) -> (u16, Value) {
    let path = format!("/v1/applications/{case}/evaluation");
    let headers = [
        ("tongban-receipt-token", token),
        ("content-type", "application/json"),
    ];
    let body = bytes::Bytes::from(serde_json::to_vec(&body).unwrap());
    let answer = portal
        .send_with("POST", &path, body, &headers)
        .await
        .unwrap();
    (answer.status, answer.body)
}

/// Files a case for resident `i` of 44 at 31; waits for its decision.
async fn decided_case(t: &TestFederation, i: usize) -> (String, String) {
    let n31 = t.fed.node("31").unwrap();
    let receipt = n31
        .portal
        .file(&medical_filing(&t.residents("44")[i]))
        .await
        .unwrap();
    assert_eq!(receipt.status, 201, "{}", receipt.body);
    let case = receipt.body["case_number"].as_str().unwrap().to_owned();
    let token = receipt.body["status_token"].as_str().unwrap().to_owned();
    eventually(WAIT, "the case decided", || async {
        let status = n31.portal.status_with_token(&case, &token).await.ok()?;
        (status.body["stage"] == "approved").then_some(())
    })
    .await;
    (case, token)
}

fn counter(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn metrics(portal: &PortalClient) -> String {
    portal
        .get("/metrics")
        .await
        .unwrap()
        .body
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poor_rating_reaches_the_handling_region_and_opens_a_follow_up() {
    let t = start(&["310000", "440000"]).await;
    let n31 = t.fed.node("31").unwrap();
    let n44 = t.fed.node("44").unwrap();

    // Before its decision a case cannot be rated.
    let receipt = n31
        .portal
        .file(&medical_filing(&t.residents("44")[2]))
        .await
        .unwrap();
    let early = receipt.body["case_number"].as_str().unwrap();
    let early_token = receipt.body["status_token"].as_str().unwrap();
    let (status, body) = evaluate(
        &n31.portal,
        early,
        early_token,
        json!({"level": "satisfied"}),
    )
    .await;
    if status != 201 {
        assert_eq!(
            (status, &body["error"]["code"]),
            (409, &json!("not_decided")),
            "{body}"
        );
    }

    let (case, token) = decided_case(&t, 0).await;
    // Bad ratings are named; a wrong token finds nothing.
    let (status, body) = evaluate(&n31.portal, &case, &token, json!({"level": "good"})).await;
    assert_eq!(
        (status, &body["error"]["fields"][0]["field"]),
        (422, &json!("level"))
    );
    let bidi = json!({"level": "satisfied", "comment": "很好\u{202E}"});
    let (status, body) = evaluate(&n31.portal, &case, &token, bidi).await;
    assert_eq!(
        (status, &body["error"]["fields"][0]["field"]),
        (422, &json!("comment"))
    );
    let (status, _) = evaluate(&n31.portal, &case, "0", json!({"level": "satisfied"})).await;
    assert_eq!(status, 404);

    // Very dissatisfied, with a comment: recorded once.
    let poor = json!({"level": "very_dissatisfied", "comment": "材料要求反复变化，办理太慢"});
    let (status, body) = evaluate(&n31.portal, &case, &token, poor.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["level"], "very_dissatisfied");
    let (status, body) = evaluate(&n31.portal, &case, &token, poor).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("already_evaluated"))
    );

    // It reaches 44, which opens a follow-up due in 10 of its working days.
    let follow_ups = eventually(WAIT, "the follow-up at 44", || async {
        let open = n44.store.follow_ups().await.ok()?;
        (!open.is_empty()).then_some(open)
    })
    .await;
    assert_eq!(follow_ups.len(), 1, "{follow_ups:?}");
    let follow_up = &follow_ups[0];
    assert_eq!(follow_up.case_number, case);
    assert_eq!(follow_up.origin_region, "310000");
    assert_eq!(follow_up.comment, "材料要求反复变化，办理太慢");
    let calendar = Calendar::built_in().unwrap();
    let due = calendar
        .for_region("440000")
        .add_working_days(business_now().date(), 10)
        .map(|d| d.to_string())
        .unwrap_or_default();
    assert_eq!(follow_up.follow_up_due.as_deref(), Some(due.as_str()));
    // 44's operators list it (a viewer's read of the operator listener).
    let listed = n44.operator.get("/follow-ups").await.unwrap();
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["follow_ups"][0]["case_number"], case.as_str());
    assert_eq!(listed.body["follow_ups"][0]["level"], "very_dissatisfied");
    assert_eq!(listed.body["follow_ups"][0]["overdue"], false);
    // Signed by 31, kept by 44 as evidence.
    let kept = n44.store.signed_messages(case.clone()).await.unwrap();
    assert!(
        kept.iter()
            .any(|e| e.method == "SubmitEvaluation" && e.signer_region == "31"),
        "{kept:?}"
    );

    // A satisfied rating of another case: counted, no follow-up.
    let (other, other_token) = decided_case(&t, 1).await;
    let (status, body) = evaluate(
        &n31.portal,
        &other,
        &other_token,
        json!({"level": "satisfied"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    eventually(WAIT, "31's outbox drained", || async {
        (n31.store.pending_outbox().await.ok()? == 0).then_some(())
    })
    .await;
    assert_eq!(n44.store.follow_ups().await.unwrap().len(), 1);

    // 31 counts both by handling province; 44 counts the follow-up it opened.
    let at_31 = metrics(&n31.admin).await;
    let name = "tongban_node_evaluations_total";
    assert_eq!(
        counter(
            &at_31,
            name,
            &["handling_region=\"44\"", "level=\"very_dissatisfied\""]
        ),
        1.0,
        "{at_31}"
    );
    assert_eq!(
        counter(
            &at_31,
            name,
            &["handling_region=\"44\"", "level=\"satisfied\""]
        ),
        1.0
    );
    let at_44 = metrics(&n44.admin).await;
    assert_eq!(
        counter(
            &at_44,
            "tongban_node_follow_ups_opened_total",
            &["very_dissatisfied"]
        ),
        1.0,
        "{at_44}"
    );
    // The gateway's console: satisfaction of province 44, from 31's counts.
    let row = eventually(WAIT, "the console's satisfaction row", || async {
        let data = t.fed.gateway().operator.get("/console/data").await.ok()?;
        let rows = data.body["satisfaction"].as_array()?.clone();
        let row = rows.into_iter().find(|r| r["handling_region"] == "44")?;
        (row["evaluations"] == 2.0).then_some(row)
    })
    .await;
    assert_eq!(row["satisfied"], 1.0, "{row}");
    assert_eq!(row["ratio"], 0.5, "{row}");
    t.shutdown().await;
}
