//! Metrics as an SRE scrapes them: `/metrics` of the gateway and the nodes, read with a
//! Prometheus text-format parser, before and after known traffic; counters move by
//! exactly what the traffic did, the per-home-region series included.

// Test helpers may panic: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

use std::{collections::HashMap, time::Duration};

use prometheus_parse::{Scrape, Value};
use tongban_kit::testing::{TestFederation, eventually, medical_filing, start};
use tongban_node::portal_client::PortalClient;

const WAIT: Duration = Duration::from_secs(20);

/// Parses one scrape into `name{sorted labels}` → value (histograms by their count).
fn parse(text: &str) -> HashMap<String, f64> {
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let mut out = HashMap::new();
    for sample in scrape.samples {
        let mut labels: Vec<_> = sample.labels.iter().collect();
        labels.sort();
        let labels = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect::<Vec<_>>()
            .join(",");
        let value = match sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
            Value::Summary(_) => continue,
        };
        out.insert(format!("{}{{{labels}}}", sample.metric), value);
    }
    out
}

async fn scrape(admin: &PortalClient) -> HashMap<String, f64> {
    let answer = admin.get("/metrics").await.unwrap();
    assert_eq!(answer.status, 200);
    let text = answer.body.as_str().unwrap().to_owned();
    parse(&text)
}

fn value(m: &HashMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

fn moved(before: &HashMap<String, f64>, after: &HashMap<String, f64>, key: &str) -> f64 {
    value(after, key) - value(before, key)
}

fn gateway_admin(t: &TestFederation) -> PortalClient {
    PortalClient::new(format!("http://{}", t.fed.gateway().admin_addr.unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_by_the_traffic_including_the_per_home_region_series() {
    let t = start(&["110000", "310000", "440000"]).await;
    let gw = gateway_admin(&t);
    let n31 = t.fed.node("31").unwrap();
    let n44 = t.fed.node("44").unwrap();
    let (gw0, a31, a44) = (
        scrape(&gw).await,
        scrape(&n31.admin).await,
        scrape(&n44.admin).await,
    );

    // Three applicants from Guangdong and two from Beijing file at Shanghai's window;
    // each case is handled in the applicant's home region.
    let mut cases = Vec::new();
    for (prefix, n) in [("44", 3), ("11", 2)] {
        for resident in t.residents(prefix).iter().take(n) {
            let receipt = n31.portal.file(&medical_filing(resident)).await.unwrap();
            assert_eq!(receipt.status, 201, "{:?}", receipt.body);
            cases.push(receipt.body["case_number"].as_str().unwrap().to_owned());
        }
    }
    for case in &cases {
        eventually(WAIT, &format!("{case} approved"), || async {
            let s = n31.portal.status(case).await.ok()?;
            (s.body["stage"] == "approved").then_some(())
        })
        .await;
    }
    // The approvals reach the origin through pushes; give the last push time to finish
    // at the gateway (its metrics are recorded once the answer is back).
    let deliveries = r#"tongban_gateway_calls_total{code="OK",method="DeliverApplication",origin="31",target="44"}"#;
    let gw1 = eventually(WAIT, "gateway counts", || async {
        let m = scrape(&gw).await;
        let approved = value(
            &m,
            r#"tongban_gateway_case_events_total{event="approved",home_region="44"}"#,
        ) + value(
            &m,
            r#"tongban_gateway_case_events_total{event="approved",home_region="11"}"#,
        );
        (approved >= 5.0).then_some(m)
    })
    .await;

    // The gateway: calls by method, origin, target and code; cases by home region.
    assert_eq!(moved(&gw0, &gw1, deliveries), 3.0);
    assert_eq!(
        moved(
            &gw0,
            &gw1,
            r#"tongban_gateway_calls_total{code="OK",method="DeliverApplication",origin="31",target="11"}"#
        ),
        2.0
    );
    for (home, n) in [("44", 3.0), ("11", 2.0)] {
        for event in ["delivered", "approved"] {
            let key = format!(
                r#"tongban_gateway_case_events_total{{event="{event}",home_region="{home}"}}"#
            );
            assert_eq!(moved(&gw0, &gw1, &key), n, "{key}");
        }
        let key =
            format!(r#"tongban_gateway_delivery_duration_seconds_count{{home_region="{home}"}}"#);
        assert_eq!(moved(&gw0, &gw1, &key), n, "{key}");
    }
    // Pre-review asked each applicant's home region once (identity), via the gateway.
    let verified: f64 = ["11", "44"]
        .iter()
        .map(|target| {
            moved(
                &gw0,
                &gw1,
                &format!(
                    r#"tongban_gateway_calls_total{{code="OK",method="VerifyIdentity",origin="31",target="{target}"}}"#
                ),
            )
        })
        .sum();
    assert_eq!(verified, 5.0);
    assert_eq!(
        moved(
            &gw0,
            &gw1,
            r#"tongban_gateway_call_duration_seconds_count{method="DeliverApplication",origin="31",target="44"}"#
        ),
        3.0
    );
    for region in ["11", "31", "44"] {
        let up = gw1
            .iter()
            .find(|(k, _)| {
                k.starts_with("tongban_gateway_upstream_up{")
                    && k.contains(&format!("region=\"{region}\""))
            })
            .map(|(_, v)| *v);
        assert_eq!(up, Some(1.0), "upstream {region}");
    }
    let expiry = value(
        &gw1,
        r#"tongban_certificate_expiry_seconds{certificate="federation"}"#,
    );
    assert!(expiry > 86_400.0, "{expiry}");
    assert!(value(&gw1, "process_resident_memory_bytes{}") > 1e6);

    // The origin node: filings, acknowledgements and decisions by home region.
    let b31 = scrape(&n31.admin).await;
    for (home, n) in [("44", 3.0), ("11", 2.0)] {
        let filed = format!(
            r#"tongban_node_filings_total{{home_region="{home}",one_thing="medical-treatment-registration"}}"#
        );
        assert_eq!(moved(&a31, &b31, &filed), n, "{filed}");
        for outcome in ["accepted", "approved"] {
            let key = format!(
                r#"tongban_node_case_outcomes_total{{handling_region="{home}",home_region="{home}",outcome="{outcome}"}}"#
            );
            assert_eq!(moved(&a31, &b31, &key), n, "{key}");
        }
        for histogram in ["time_to_first_status", "time_to_decision"] {
            let key = format!(r#"tongban_node_{histogram}_seconds_count{{home_region="{home}"}}"#);
            assert_eq!(moved(&a31, &b31, &key), n, "{key}");
        }
    }
    assert_eq!(
        moved(
            &a31,
            &b31,
            r#"tongban_node_client_calls_total{code="OK",method="DeliverApplication",target="44"}"#
        ),
        3.0
    );
    assert_eq!(
        moved(
            &a31,
            &b31,
            r#"tongban_node_outbox_attempts_total{kind="deliver",result="done"}"#
        ),
        5.0
    );
    // Nothing owed any more.
    for target in ["11", "44"] {
        let key = format!(r#"tongban_node_outbox_pending{{target="{target}"}}"#);
        assert_eq!(value(&b31, &key), 0.0, "{key}");
    }

    // The handling node: deliveries served, by origin, and the pushes back (each is
    // counted once its answer is back at 44).
    let push_key = r#"tongban_node_client_calls_total{code="OK",method="PushStatus",target="31"}"#;
    let b44 = eventually(WAIT, "pushes counted at 44", || async {
        let m = scrape(&n44.admin).await;
        (moved(&a44, &m, push_key) >= 6.0).then_some(m)
    })
    .await;
    assert_eq!(
        moved(
            &a44,
            &b44,
            r#"tongban_node_server_calls_total{code="OK",method="DeliverApplication",origin="31"}"#
        ),
        3.0
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_shows_its_depth_and_age_while_the_target_is_down() {
    let mut t = start(&["310000", "440000"]).await;
    t.fed.stop_node("44").await.unwrap();
    let n31 = t.fed.node("31").unwrap().admin.clone();
    let portal31 = t.fed.node("31").unwrap().portal.clone();
    let resident = &t.residents("44")[0];
    let receipt = portal31.file(&medical_filing(resident)).await.unwrap();
    // 44 is down: the identity check cannot be made, the case waits in pre-review.
    assert_eq!(receipt.status, 201, "{:?}", receipt.body);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let m = scrape(&n31).await;
    assert_eq!(
        value(&m, r#"tongban_node_outbox_pending{target="44"}"#),
        1.0
    );
    let age = value(
        &m,
        r#"tongban_node_outbox_oldest_pending_seconds{target="44"}"#,
    );
    assert!((1.0..60.0).contains(&age), "{age}");
    assert!(
        value(
            &m,
            r#"tongban_node_outbox_attempts_total{kind="verify",result="retry"}"#
        ) >= 1.0
    );
    let gw = scrape(&gateway_admin(&t)).await;
    let down = gw
        .iter()
        .find(|(k, _)| k.starts_with("tongban_gateway_upstream_up{") && k.contains("region=\"44\""))
        .map(|(_, v)| *v);
    assert_eq!(down, Some(0.0), "{gw:#?}");
    t.fed.restart_node("44").await.unwrap();
    eventually(WAIT, "backlog drained", || async {
        let m = scrape(&n31).await;
        (value(&m, r#"tongban_node_outbox_pending{target="44"}"#) == 0.0).then_some(())
    })
    .await;
    t.shutdown().await;
}
