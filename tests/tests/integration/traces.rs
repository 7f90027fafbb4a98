//! One trace per case across regions: a real OTLP/gRPC collector receives what the
//! origin node, the gateway and the handling node export, and the spans of one
//! cross-region application form one trace with the right parents, the status push back
//! included.

// Test helpers may panic: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tongban_kit::otlp_collector::{OtlpCollector, ReceivedSpan};
use tongban_kit::testing::{eventually, medical_filing, start_with};
use tongban_runtime::observability::traces::TelemetryConfig;

const WAIT: Duration = Duration::from_secs(20);

/// The one span of `trace` named `name` sent by `service`.
fn one<'a>(spans: &'a [ReceivedSpan], service: &str, name: &str) -> &'a ReceivedSpan {
    let found: Vec<_> = spans
        .iter()
        .filter(|s| s.service == service && s.name == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{service} {name}: {found:#?}\nall: {:#?}",
        spans
            .iter()
            .map(|s| (&s.service, &s.name, &s.span_id, &s.parent_span_id))
            .collect::<Vec<_>>()
    );
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_region_case_is_one_trace_from_the_portal_to_the_status_push() {
    let collector = OtlpCollector::start().await.unwrap();
    let t = start_with(&["310000", "440000"], |spec| {
        spec.telemetry = TelemetryConfig {
            otlp_endpoint: Some(collector.endpoint()),
            sample_ratio: Some(1.0),
            export_every: Some(Duration::from_millis(100)),
            ..Default::default()
        };
    })
    .await;
    let resident = &t.residents("44")[0];
    // The portal in front of the node sends its own trace context.
    let portal_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let portal_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{portal_trace}-{portal_span}-01");
    let n31 = t.fed.node("31").unwrap();
    let receipt = n31
        .portal
        .file_with_headers(&medical_filing(resident), &[("traceparent", &traceparent)])
        .await
        .unwrap();
    assert_eq!(receipt.status, 201, "{:?}", receipt.body);
    assert_eq!(receipt.body["trace_id"], portal_trace);
    let case = receipt.body["case_number"].as_str().unwrap().to_owned();
    eventually(WAIT, "case approved at the origin", || async {
        let s = n31.portal.status(&case).await.ok()?;
        (s.body["stage"] == "approved").then_some(())
    })
    .await;

    // Done when at least two status pushes left 44 and each has reached 31 through the
    // gateway (the three processes export on their own schedules).
    let push_done = |spans: &[ReceivedSpan]| {
        let pushes: Vec<_> = spans
            .iter()
            .filter(|s| s.name == "tongban.federation.v1.Gateway/PushStatus")
            .collect();
        pushes.len() >= 2
            && pushes.iter().all(|push| {
                spans
                    .iter()
                    .filter(|g| g.parent_span_id == push.span_id)
                    .any(|g| spans.iter().any(|o| o.parent_span_id == g.span_id))
            })
    };
    let spans = collector.wait_for(WAIT, push_done).await;
    let spans: Vec<_> = spans
        .into_iter()
        .filter(|s| s.trace_id == portal_trace)
        .collect();
    let origin = "tongban-node-310000";
    let target = "tongban-node-440000";
    let gateway = "tongban-gateway";

    // Filing at the origin, under the portal's span.
    let filing = one(&spans, origin, "file application");
    assert_eq!(filing.parent_span_id, portal_span);
    assert_eq!(
        filing.attribute("tongban.one_thing"),
        Some("medical-treatment-registration")
    );
    assert_eq!(filing.attribute("tongban.origin"), Some("310000"));

    // Pre-review: the identity check goes to the home region (44) through the gateway.
    let verify = one(
        &spans,
        origin,
        "tongban.federation.v1.Gateway/VerifyIdentity",
    );
    assert_eq!(verify.parent_span_id, filing.span_id);
    let verify_gw = one(&spans, gateway, "VerifyIdentity");
    assert_eq!(verify_gw.parent_span_id, verify.span_id);
    assert_eq!(verify_gw.attribute("tongban.cache"), Some("miss"));
    assert_eq!(verify_gw.attribute("tongban.origin"), Some("31"));
    let assert = one(&spans, target, "tongban.federation.v1.Node/AssertIdentity");
    assert_eq!(assert.parent_span_id, verify_gw.span_id);

    // The delivery: origin's outbox attempt → gateway → the handling node.
    let deliver = one(
        &spans,
        origin,
        "tongban.federation.v1.Gateway/DeliverApplication",
    );
    assert_eq!(deliver.parent_span_id, filing.span_id);
    assert_eq!(deliver.kind, 3, "a client span");
    assert_eq!(deliver.attribute("tongban.attempt"), Some("1"));
    assert_eq!(deliver.attribute("tongban.target"), Some("440100"));
    let deliver_gw = one(&spans, gateway, "DeliverApplication");
    assert_eq!(deliver_gw.parent_span_id, deliver.span_id);
    assert_eq!(deliver_gw.kind, 2, "a server span");
    assert_eq!(deliver_gw.attribute("rpc.grpc.status_code"), Some("0"));
    assert_eq!(deliver_gw.attribute("tongban.target"), Some("440100"));
    let received = one(
        &spans,
        target,
        "tongban.federation.v1.Node/DeliverApplication",
    );
    assert_eq!(received.parent_span_id, deliver_gw.span_id);

    // Status pushes back: each a child of the delivery the handling node received,
    // through the gateway, into the origin.
    let pushes: Vec<_> = spans
        .iter()
        .filter(|s| s.service == target && s.name == "tongban.federation.v1.Gateway/PushStatus")
        .collect();
    assert!(pushes.len() >= 2, "in review, then approved: {pushes:#?}");
    for push in pushes {
        assert_eq!(push.parent_span_id, received.span_id);
        let via: Vec<_> = spans
            .iter()
            .filter(|s| s.service == gateway && s.parent_span_id == push.span_id)
            .collect();
        assert_eq!(via.len(), 1, "{via:#?}");
        assert_eq!(via[0].name, "PushStatus");
        let applied: Vec<_> = spans
            .iter()
            .filter(|s| s.service == origin && s.parent_span_id == via[0].span_id)
            .collect();
        assert_eq!(applied.len(), 1, "{applied:#?}");
        assert_eq!(applied[0].name, "tongban.federation.v1.Node/PushStatus");
    }

    // No span carries personal data: no ID number, no name.
    for span in &spans {
        for (key, value) in &span.attributes {
            assert!(
                !value.contains(resident.id.as_str()) && !value.contains(&resident.name),
                "{key}={value} in {}",
                span.name
            );
        }
    }
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_portal_context_the_node_starts_the_trace_and_off_means_no_export() {
    let collector = OtlpCollector::start().await.unwrap();
    // Traces on at 31 only would need per-member settings; here every member traces at
    // ratio 0: nothing is recorded, yet calls still carry one trace id per case.
    let t = start_with(&["310000", "440000"], |spec| {
        spec.telemetry = TelemetryConfig {
            otlp_endpoint: Some(collector.endpoint()),
            sample_ratio: Some(0.0),
            export_every: Some(Duration::from_millis(100)),
            ..Default::default()
        };
    })
    .await;
    let resident = &t.residents("44")[0];
    let n31 = t.fed.node("31").unwrap();
    let receipt = n31.portal.file(&medical_filing(resident)).await.unwrap();
    assert_eq!(receipt.status, 201, "{:?}", receipt.body);
    let trace_id = receipt.body["trace_id"].as_str().unwrap().to_owned();
    assert_eq!(trace_id.len(), 32);
    let case = receipt.body["case_number"].as_str().unwrap().to_owned();
    eventually(WAIT, "case approved at the origin", || async {
        let s = n31.portal.status(&case).await.ok()?;
        (s.body["stage"] == "approved").then_some(())
    })
    .await;
    // The handling node recorded the delivery under the same trace id.
    let db = t.dir.path().join("node-44.db");
    let stored: String = rusqlite::Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT trace_id FROM inbound WHERE case_number = ?1",
            [&case],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, trace_id);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(collector.spans().is_empty(), "{:#?}", collector.spans());
    t.shutdown().await;
}
