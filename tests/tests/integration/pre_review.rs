//! Pre-review with a deadline: a case filed while the applicant's home region cannot be
//! asked waits (receipted, `verification: pending`), but not forever — past
//! `[recognition] verification_deadline` it is a dead letter an operator sees (and the
//! dead-letter alert counts), the citizen reads that staff are reviewing it, and once the
//! region answers again the operator's replay finishes its pre-review. It once waited
//! with no deadline and no alert, retried every few seconds for as long as it took.

// Test helpers may panic: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::json;
use tongban_kit::{
    Member,
    testing::{eventually, medical_filing, start_with},
};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_unverified_by_its_deadline_is_a_dead_letter_an_operator_replays() {
    let mut t = start_with(&["310000", "440000"], |spec| {
        spec.node_recognition.verification_deadline = Duration::from_secs(2);
    })
    .await;
    // The applicant's home region is down while the case is filed at Shanghai.
    t.fed.stop(&Member::Node("44".into())).await.unwrap();
    let person = t.residents("44")[10].clone();
    let n31 = t.fed.node("31").unwrap();
    let r = n31.portal.file(&medical_filing(&person)).await.unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["verification"], "pending", "{}", r.body);
    let case = r.body["case_number"].as_str().unwrap().to_owned();

    // Past the deadline: a dead letter, which the operator lists with why.
    let dead = eventually(WAIT, "the unverified case a dead letter", || async {
        let list = n31.operator.get("/outbox").await.ok()?;
        list.body["dead_letters"]
            .as_array()?
            .iter()
            .find(|d| d["case_number"] == case.as_str() && d["kind"] == "verify")
            .cloned()
    })
    .await;
    let error = dead["error"].as_str().unwrap();
    assert!(error.contains("within 2s"), "{dead}");
    let status = n31.portal.status(&case).await.unwrap();
    assert_eq!(status.status, 200, "{}", status.body);
    assert!(
        status.body["detail"]
            .as_str()
            .unwrap()
            .contains("staff of the filing region are reviewing it"),
        "{}",
        status.body
    );
    let scrape = n31.admin.get("/metrics").await.unwrap().body;
    let scrape = scrape.as_str().unwrap();
    assert!(
        scrape
            .lines()
            .any(|l| l.starts_with("tongban_node_outbox_failed{") && !l.ends_with(" 0")),
        "no dead letter counted:\n{scrape}"
    );

    // The region is back; the operator replays: verified and handed over.
    t.fed.restart(&Member::Node("44".into())).await.unwrap();
    let n31 = t.fed.node("31").unwrap();
    let id = dead["id"].as_i64().unwrap();
    let replayed = n31
        .operator
        .post_json(&format!("/outbox/{id}/replay"), &json!({}))
        .await
        .unwrap();
    assert_eq!(replayed.status, 200, "{}", replayed.body);
    eventually(WAIT, "the replayed case verified", || async {
        let s = n31.portal.status(&case).await.ok()?;
        (s.body["receipt"]["verification"] == "complete").then_some(())
    })
    .await;
    t.shutdown().await;
}
