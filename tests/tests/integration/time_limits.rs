//! Time limits kept, through real nodes and the gateway's console: open cases carry
//! their promised date and the working days left to it (negative once overdue), the
//! filing node counts them due soon and overdue by handling province and one-thing in
//! its `/metrics`, and the console shows them per node. A case filed "weeks ago" is made
//! by moving its stored promise into the past (the clerk never decides here); every
//! expectation is computed by the official calendar, so the test holds on any day.

// Test helpers may panic: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tongban_kit::testing::{TestFederation, eventually, medical_filing, start_with};
use tongban_proto::rules::calendar::{business_now, working_days::Calendar};

const PAST_PROMISE: &str = "2026-01-05";

fn gauge(text: &str, name: &str, one_thing: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(&format!("one_thing=\"{one_thing}\"")))
        .filter(|l| l.contains("handling_region=\"44\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn file(t: &TestFederation, i: usize) -> (String, String) {
    let resident = &t.residents("44")[i];
    let n31 = t.fed.node("31").unwrap();
    let receipt = n31.portal.file(&medical_filing(resident)).await.unwrap();
    assert_eq!(receipt.status, 201, "{}", receipt.body);
    (
        receipt.body["case_number"].as_str().unwrap().to_owned(),
        receipt.body["status_token"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_cases_are_counted_due_soon_and_overdue_and_the_console_shows_them() {
    // No clerk: the cases stay open at 44.
    let t = start_with(&["310000", "440000"], |spec| spec.auto_approve_after = None).await;
    let (fresh, fresh_token) = file(&t, 0).await;
    let (old, old_token) = file(&t, 1).await;
    let n31 = t.fed.node("31").unwrap();
    // Accepted at 44 before anything is counted (a case still submitted counts too, but
    // the status read below should be the handling region's).
    for (case, token) in [(&fresh, &fresh_token), (&old, &old_token)] {
        eventually(Duration::from_secs(30), "accepted at 44", || async {
            let status = n31.portal.status_with_token(case, token).await.ok()?;
            (status.body["stage"] == "accepted").then_some(())
        })
        .await;
    }
    // The second case was filed weeks ago: its promise lies in the past.
    let db = rusqlite::Connection::open(t.dir.path().join("node-31.db")).unwrap();
    let moved = db
        .execute(
            "UPDATE applications SET receipt = json_set(receipt, '$.promised_date', ?1)
             WHERE case_number = ?2",
            rusqlite::params![PAST_PROMISE, old],
        )
        .unwrap();
    assert_eq!(moved, 1);

    let calendar = Calendar::built_in().unwrap();
    let today = business_now().date();
    let status = n31
        .portal
        .status_with_token(&old, &old_token)
        .await
        .unwrap();
    let handling = status.body["handling_region"].as_str().unwrap().to_owned();
    let cal = calendar.for_region(&handling);
    let past = time::macros::date!(2026 - 01 - 05);
    assert_eq!(status.body["promised_date"], PAST_PROMISE);
    assert_eq!(
        status.body["remaining_working_days"].as_i64(),
        cal.working_days_between(today, past).ok(),
        "{}",
        status.body
    );
    let status = n31
        .portal
        .status_with_token(&fresh, &fresh_token)
        .await
        .unwrap();
    let promised = status.body["promised_date"].as_str().unwrap().to_owned();
    let fresh_left = cal
        .add_working_days(today, 1)
        .ok()
        .and_then(|d| cal.working_days_between(today, d).ok());
    assert_eq!(
        status.body["remaining_working_days"].as_i64(),
        fresh_left,
        "{}",
        status.body
    );

    // 31's metrics: one overdue (where today's year has a schedule), one due soon
    // (where the calendar reached its promise).
    // The open cases are read at most every 10 s (a scrape between two reads reports
    // the last counts), so the moved promise shows within that.
    let one_thing = "medical-treatment-registration";
    let covered = calendar.covered_through(today).is_some();
    let expected = (
        if covered { 1.0 } else { 0.0 },
        if promised.is_empty() { 0.0 } else { 1.0 },
    );
    eventually(
        Duration::from_secs(20),
        "31's time-limit gauges",
        || async {
            let text = n31.admin.get("/metrics").await.ok()?.body;
            let text = text.as_str()?;
            let seen = (
                gauge(text, "tongban_node_cases_overdue", one_thing),
                gauge(text, "tongban_node_cases_due_soon", one_thing),
            );
            (seen == expected).then_some(())
        },
    )
    .await;

    // The console's node table shows 31's open cases against their time limits.
    let row = eventually(
        Duration::from_secs(20),
        "the console's row for 31",
        || async {
            let data = t.fed.gateway().operator.get("/console/data").await.ok()?;
            let nodes = data.body["nodes"].as_array()?.clone();
            let row = nodes.into_iter().find(|n| n["region"] == "310000")?;
            (row["cases_overdue"].as_f64() == Some(expected.0)
                && row["cases_due_soon"].as_f64() == Some(expected.1))
            .then_some(row)
        },
    )
    .await;
    if covered {
        assert_eq!(row["time_limits"][0]["handling_region"], "44", "{row}");
        assert_eq!(row["time_limits"][0]["one_thing"], one_thing, "{row}");
    }
    t.shutdown().await;
}
