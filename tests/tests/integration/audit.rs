//! The audit trails as records: every call lands in the gateway's hash-chained file
//! whatever the log level (the tests run at `warn`), once: counted exactly by method
//! and outcome against the calls the test made, the gateway's refusals, the node's
//! refusals and a dead letter included, each with its caller, target, code, key, case
//! and trace id; and `tongban audit verify` finds an edited, a deleted and a reordered
//! record; each trail ends with a checkpoint signed by its writer's certificate, which
//! shows records cut off the end; nodes keep a trail of what they accepted and handed
//! over.

#![allow(clippy::unwrap_used)]

use std::{collections::BTreeMap, path::Path, process::Command, time::Duration};

use serde_json::Value;
use tongban_kit::testing::{TestFederation, eventually, medical_filing, start, start_with};
use tongban_proto::{
    contract::metadata,
    v1::{
        Application, DeliverApplicationRequest, VerifyIdentityRequest,
        gateway_client::GatewayClient,
    },
};
use tongban_runtime::{
    observability::trace_context::TraceParent,
    trust::{identity::PeerIdentity, pki::DevCa},
};
use tonic::{Code, Request, metadata::MetadataValue};

fn verify(file: &Path) -> (bool, String) {
    verify_with(file, &[])
}

fn verify_with(file: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(tongban_kit::testing::cli_binary())
        .args(["audit", "verify"])
        .arg(file)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A copy of the trail with its lines changed by `edit`.
fn tampered(trail: &Path, name: &str, edit: impl FnOnce(&mut Vec<String>)) -> std::path::PathBuf {
    let mut lines: Vec<String> = std::fs::read_to_string(trail)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    edit(&mut lines);
    let copy = trail.with_file_name(format!("tampered-{name}.log"));
    std::fs::write(&copy, lines.join("\n") + "\n").unwrap();
    copy
}

/// The records of a trail as JSON, its checkpoints left out.
fn records(trail: &Path) -> Vec<Value> {
    std::fs::read_to_string(trail)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l.splitn(3, '\t').nth(2).unwrap()).unwrap())
        .filter(|r| r.get("checkpoint").is_none())
        .collect()
}

/// Records one a line, for a failure's message.
fn lines(records: &[Value]) -> String {
    records
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A `traceparent` of its own for call `n` of the test, and its trace id.
fn trace(n: u32) -> (String, String) {
    let id = format!("{:032x}", 0x7a11_0000_u64 + u64::from(n));
    (
        format!("00-{id}-{:016x}-01", 0x5eed_0000_u64 + u64::from(n)),
        id,
    )
}

/// A record's field as text (numbers as their digits), "" when absent.
fn field(record: &Value, name: &str) -> String {
    match &record[name] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// How many records each (`keys`…) combination has.
fn tally(records: &[Value], keys: &[&str]) -> BTreeMap<Vec<String>, usize> {
    let mut counts = BTreeMap::new();
    for r in records {
        let key = keys.iter().map(|k| field(r, k)).collect();
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// `[(["a", "b"], n)]` as a tally.
fn expected<const N: usize>(rows: &[([&str; N], usize)]) -> BTreeMap<Vec<String>, usize> {
    rows.iter()
        .map(|(k, n)| (k.iter().map(|s| (*s).to_owned()).collect(), *n))
        .collect()
}

/// The one record of `records` with this trace id and these field values; fails if
/// there is none or more than one.
fn the_one<'a>(records: &'a [Value], trace_id: &str, with: &[(&str, &str)]) -> &'a Value {
    let found: Vec<&Value> = records
        .iter()
        .filter(|r| field(r, "trace_id") == trace_id && with.iter().all(|(k, v)| field(r, k) == *v))
        .collect();
    assert_eq!(found.len(), 1, "one record {trace_id} {with:?}: {found:?}");
    found[0]
}

fn with_meta<T>(message: T, pairs: &[(&'static str, &str)]) -> Request<T> {
    let mut request = Request::new(message);
    for (k, v) in pairs {
        request
            .metadata_mut()
            .insert(*k, MetadataValue::try_from(*v).unwrap());
    }
    request
}

/// The calls the gateway refuses itself, made straight to it: what, the method
/// recorded, the caller recorded, the code, the idempotency key and its trace number.
const REFUSED: [(&str, &str, &str, Code, &str, u32); 5] = [
    (
        "no target region",
        "DeliverApplication",
        "31",
        Code::InvalidArgument,
        "audit-refused-1",
        101,
    ),
    (
        "a target region that does not exist",
        "DeliverApplication",
        "31",
        Code::NotFound,
        "audit-refused-2",
        102,
    ),
    (
        "an origin claim outside the caller",
        "DeliverApplication",
        "31",
        Code::PermissionDenied,
        "audit-refused-3",
        103,
    ),
    (
        "an identity lookup of a malformed ID number",
        "VerifyIdentity",
        "31",
        Code::InvalidArgument,
        "audit-refused-4",
        104,
    ),
    (
        "a caller absent from the registry",
        "DeliverApplication",
        "32",
        Code::PermissionDenied,
        "audit-refused-5",
        105,
    ),
];

/// Makes the [`REFUSED`] calls (31's and an unregistered 32's) and one delivery the
/// gateway relays and 44 refuses (trace 106); checks each got its code.
async fn refused_calls(t: &TestFederation) {
    let issue = |identity: &PeerIdentity| {
        let dir = t.dir.path().join("pki");
        let ca = DevCa::load(
            &std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
            &std::fs::read_to_string(dir.join("ca.key")).unwrap(),
        )
        .unwrap();
        let leaf = ca.issue(identity, Duration::from_secs(3600)).unwrap();
        tongban_runtime::trust::pki::write_leaf(&dir, identity, &leaf).unwrap();
    };
    let jiangsu = PeerIdentity::from_uri("spiffe://tongban/region/32").unwrap();
    issue(&jiangsu);
    let shanghai = PeerIdentity::from_uri("spiffe://tongban/region/31").unwrap();
    let as_31 = GatewayClient::new(t.gateway_channel(&t.tls_files(&shanghai)).await.unwrap());
    let as_32 = GatewayClient::new(t.gateway_channel(&t.tls_files(&jiangsu)).await.unwrap());
    let resident = &t.residents("44")[5];
    for (what, method, caller, code, key, n) in REFUSED {
        let (traceparent, _) = trace(n);
        let mut meta = vec![
            (metadata::IDEMPOTENCY_KEY, key),
            (metadata::TRACEPARENT, traceparent.as_str()),
        ];
        match n {
            102 => meta.push((metadata::TARGET_REGION, "990000")),
            103 => meta.extend([
                (metadata::TARGET_REGION, "440000"),
                (metadata::ORIGIN_REGION, "440000"),
            ]),
            105 => meta.push((metadata::TARGET_REGION, "440000")),
            _ => {}
        }
        let mut client = if caller == "32" {
            as_32.clone()
        } else {
            as_31.clone()
        };
        let status = if method == "VerifyIdentity" {
            let request = VerifyIdentityRequest {
                id_number: "1101051949".into(),
                name: resident.name.clone(),
                purpose: None,
            };
            client
                .verify_identity(with_meta(request, &meta))
                .await
                .unwrap_err()
        } else {
            let request = DeliverApplicationRequest::default();
            client
                .deliver_application(with_meta(request, &meta))
                .await
                .unwrap_err()
        };
        assert_eq!(status.code(), code, "{what}: {status:?}");
    }
    // Relayed to 44, which refuses it: an application without an applicant.
    let (traceparent, _) = trace(106);
    let request = DeliverApplicationRequest {
        application: Some(Application {
            case_number: "310000-20261202-00000106".into(),
            one_thing_id: "medical-treatment-registration".into(),
            origin_region: "310000".into(),
            target_region: "440000".into(),
            ..Application::default()
        }),
    };
    let meta = [
        (metadata::IDEMPOTENCY_KEY, "audit-node-refused"),
        (metadata::TARGET_REGION, "440000"),
        (metadata::TRACEPARENT, traceparent.as_str()),
    ];
    let mut client = as_31.clone();
    let status = client
        .deliver_application(with_meta(request, &meta))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

/// Files at 31, straight into its store (no pre-review, as a bug or a divergent catalog
/// would), an application for resident 6 of 44 that lacks a field its catalog version
/// requires, under trace 107: 44 refuses it for good and it becomes a dead letter.
async fn file_a_dead_letter(t: &TestFederation) -> String {
    let lacking = [("treatment_region", "310115")];
    super::outbox::file_direct_as(t, 6, &lacking, TraceParent::parse(&trace(107).0)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trail_records_every_call_and_verify_finds_tampering() {
    // No clerk steps during the test: the calls are the test's own, so they can be
    // counted exactly.
    let t = start_with(&["310000", "440000"], |spec| {
        spec.auto_approve_after = None;
    })
    .await;
    let n31 = t.fed.node("31").unwrap();
    // Three filings at 31's portal, each under a trace of its own (1, 2, 3): each makes
    // an identity lookup, a license fetch and a delivery through the gateway.
    let mut cases = Vec::new();
    for (n, resident) in (1..).zip(t.residents("44").iter().take(3)) {
        let (traceparent, _) = trace(n);
        let r = n31
            .portal
            .file_with_headers(&medical_filing(resident), &[("traceparent", &traceparent)])
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
        cases.push(r.body["case_number"].as_str().unwrap().to_owned());
    }
    refused_calls(&t).await;
    let dead_case = file_a_dead_letter(&t).await;
    let dir = t.dir.path().to_owned();
    let (gateway_trail, trail_31, trail_44) = (
        dir.join("gateway-audit.log"),
        dir.join("node-31-audit.log"),
        dir.join("node-44-audit.log"),
    );
    // The dead letter is the last thing that happens; then stopping flushes every trail.
    eventually(
        Duration::from_secs(20),
        "the dead letter in 31's trail",
        || async {
            let text = std::fs::read_to_string(&trail_31).ok()?;
            text.contains("\"event\":\"dead_letter\"").then_some(())
        },
    )
    .await;
    let residents = t.residents("44");
    let TestFederation { fed, dir: _keep } = t;
    fed.shutdown().await;

    // The gateway: one record per call, by method and outcome, exactly.
    let gateway = records(&gateway_trail);
    let outcomes = tally(
        &gateway,
        &["audit", "method", "caller", "grpc_status", "code"],
    );
    assert_eq!(
        outcomes,
        expected(&[
            (["relayed", "VerifyIdentity", "31", "0", ""], 3),
            (["relayed", "ListLicenses", "31", "0", ""], 3),
            (["relayed", "DeliverApplication", "31", "0", ""], 3),
            // 44's refusals: the test's own delivery and the dead letter's.
            (["relayed", "DeliverApplication", "31", "3", ""], 2),
            (["refused", "DeliverApplication", "31", "", "3"], 1),
            (["refused", "DeliverApplication", "31", "", "5"], 1),
            (["refused", "DeliverApplication", "31", "", "7"], 1),
            (["refused", "VerifyIdentity", "31", "", "3"], 1),
            (["refused", "DeliverApplication", "32", "", "7"], 1),
        ]),
        "the records:\n{}",
        lines(&gateway)
    );
    for (n, case) in (1..).zip(&cases) {
        let (_, id) = trace(n);
        let delivery = the_one(&gateway, &id, &[("method", "DeliverApplication")]);
        assert_eq!(
            field(delivery, "idempotency_key"),
            format!("deliver:{case}")
        );
        assert_eq!(
            field(delivery, "one_thing"),
            "medical-treatment-registration"
        );
        let handling = field(delivery, "target_region");
        assert!(handling.starts_with("44"), "{delivery}");
        for method in ["VerifyIdentity", "ListLicenses"] {
            let lookup = the_one(&gateway, &id, &[("method", method)]);
            assert_eq!(field(lookup, "target_region"), handling, "{lookup}");
        }
    }
    for (what, method, caller, code, key, n) in REFUSED {
        let (_, id) = trace(n);
        let r = the_one(&gateway, &id, &[("audit", "refused")]);
        assert_eq!(field(r, "method"), method, "{what}: {r}");
        assert_eq!(field(r, "caller"), caller, "{what}: {r}");
        assert_eq!(field(r, "code"), (code as i32).to_string(), "{what}: {r}");
        assert_eq!(field(r, "idempotency_key"), key, "{what}: {r}");
        assert_eq!(field(r, "target_region"), "", "{what}: {r}");
        assert!(
            !field(r, "message").is_empty(),
            "{what}: the reason is kept: {r}"
        );
    }
    for (n, key) in [
        (106, "audit-node-refused".to_owned()),
        (107, format!("deliver:{dead_case}")),
    ] {
        let (_, id) = trace(n);
        let r = the_one(&gateway, &id, &[("audit", "relayed")]);
        assert_eq!(field(r, "target_region"), "440000", "{r}");
        assert_eq!(field(r, "idempotency_key"), key, "{r}");
    }

    // 44: each call it served, with the verified origin and the code it answered.
    let served = records(&trail_44);
    assert_eq!(
        tally(&served, &["event", "method", "origin", "code"]),
        expected(&[
            (["served", "AssertIdentity", "31", "0"], 3),
            (["served", "FetchHolderLicenses", "31", "0"], 3),
            (["served", "DeliverApplication", "31", "0"], 3),
            (["served", "DeliverApplication", "31", "3"], 2),
        ]),
        "the records:\n{}",
        lines(&served)
    );
    for n in 1..=3 {
        let (_, id) = trace(n);
        for method in [
            "AssertIdentity",
            "FetchHolderLicenses",
            "DeliverApplication",
        ] {
            the_one(&served, &id, &[("method", method), ("code", "0")]);
        }
    }
    for n in [106, 107] {
        the_one(
            &served,
            &trace(n).1,
            &[("method", "DeliverApplication"), ("code", "3")],
        );
    }

    // 31: each filing, each hand-over, and the delivery given up as a dead letter.
    let origin = records(&trail_31);
    assert_eq!(
        tally(&origin, &["event", "kind", "one_thing"]),
        expected(&[
            (["filed", "", "medical-treatment-registration"], 3),
            (
                ["handed_over", "deliver", "medical-treatment-registration"],
                3
            ),
            (
                ["dead_letter", "deliver", "medical-treatment-registration"],
                1
            ),
        ]),
        "the records:\n{}",
        lines(&origin)
    );
    for (n, case) in (1..).zip(&cases) {
        let (_, id) = trace(n);
        let filed = the_one(&origin, &id, &[("event", "filed"), ("case", case)]);
        let handling = field(filed, "handling_region");
        let done = the_one(&origin, &id, &[("event", "handed_over"), ("case", case)]);
        assert_eq!(field(done, "target"), handling, "{done}");
        assert_eq!(field(done, "attempts"), "1", "{done}");
    }
    let dead = the_one(&origin, &trace(107).1, &[("event", "dead_letter")]);
    assert_eq!(field(dead, "case"), dead_case, "{dead}");
    assert_eq!(field(dead, "target"), "440000", "{dead}");
    assert_eq!(field(dead, "attempts"), "1", "{dead}");

    // Records name parties and keys, never an applicant: no ID number or name of the
    // residents filed for or looked up, in any trail.
    for trail in [&gateway_trail, &trail_31, &trail_44] {
        let content = std::fs::read_to_string(trail).unwrap();
        for resident in [0, 1, 2, 5, 6].map(|i| &residents[i]) {
            assert!(
                !content.contains(resident.id.as_str()),
                "an ID number in {}",
                trail.display()
            );
            assert!(
                !content.contains(&resident.name),
                "a name in {}",
                trail.display()
            );
        }
        assert!(
            !content.contains("1101051949"),
            "a looked-up ID number in {}",
            trail.display()
        );
    }

    let (ok, text) = verify(&gateway_trail);
    assert!(ok, "{text}");
    assert!(text.contains("chain intact"), "{text}");
    let edited = tampered(&gateway_trail, "edited", |l| {
        l[1] = l[1].replace("\"caller\":\"31\"", "\"caller\":\"11\"")
    });
    let deleted = tampered(&gateway_trail, "deleted", |l| {
        l.remove(1);
    });
    let reordered = tampered(&gateway_trail, "reordered", |l| l.swap(1, 2));
    for (file, expect) in [
        (&edited, "was edited"),
        (&deleted, "missing"),
        (&reordered, "out of order"),
    ] {
        let (ok, text) = verify(file);
        assert!(!ok, "{} verified: {text}", file.display());
        assert!(text.contains(expect) && text.contains("line 2"), "{text}");
    }
    println!(
        "{} gateway records, {} at 44, {} at 31, each call counted; edited, deleted and reordered copies refused",
        gateway.len(),
        served.len(),
        origin.len()
    );
}

/// The head a checkpoint record states, from the trail's last checkpoint line.
fn last_checkpoint(trail: &Path) -> (u64, String) {
    let text = std::fs::read_to_string(trail).unwrap();
    let line = text
        .lines()
        .rfind(|l| l.contains("\t{\"checkpoint\":"))
        .expect("a checkpoint in the trail");
    let json: serde_json::Value =
        serde_json::from_str(line.splitn(3, '\t').nth(2).unwrap()).unwrap();
    let c = &json["checkpoint"];
    (
        c["covers"].as_u64().unwrap(),
        c["head"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trails_end_signed_and_nodes_keep_their_own() {
    let t = start(&["310000", "440000"]).await;
    let n31 = t.fed.node("31").unwrap();
    for resident in t.residents("44").iter().take(2) {
        let r = n31.portal.file(&medical_filing(resident)).await.unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let node_trail = t.dir.path().join("node-44-audit.log");
    eventually(
        Duration::from_secs(20),
        "deliveries in 44's trail",
        || async {
            let text = std::fs::read_to_string(&node_trail).ok()?;
            (text.matches("\"method\":\"DeliverApplication\"").count() >= 2).then_some(())
        },
    )
    .await;
    let residents: Vec<_> = t.residents("44").into_iter().take(2).collect();
    let tongban_kit::testing::TestFederation { fed, dir } = t;
    // Stopping writes each trail's last checkpoint.
    fed.shutdown().await;
    let ca = dir.path().join("pki/ca.pem");
    let ca = ca.to_str().unwrap();
    let trails = [
        dir.path().join("gateway-audit.log"),
        dir.path().join("node-31-audit.log"),
        node_trail.clone(),
    ];
    for trail in &trails {
        let (ok, text) = verify_with(trail, &["--ca", ca]);
        assert!(ok, "{}: {text}", trail.display());
        assert!(
            text.contains("signed checkpoints hold (signers' certificates checked against the CA"),
            "{text}"
        );
        let content = std::fs::read_to_string(trail).unwrap();
        for resident in &residents {
            assert!(
                !content.contains(resident.id.as_str()),
                "an ID number in {}",
                trail.display()
            );
            assert!(
                !content.contains(&resident.name),
                "a name in {}",
                trail.display()
            );
        }
    }
    let filed = std::fs::read_to_string(&trails[1]).unwrap();
    assert_eq!(filed.matches("\"event\":\"filed\"").count(), 2, "{filed}");
    assert!(filed.contains("\"event\":\"handed_over\""), "{filed}");
    assert!(
        std::fs::read_to_string(&node_trail)
            .unwrap()
            .contains("\"signer\":\"spiffe://tongban/region/44\"")
    );

    // Records cut off the end, checkpoint and all: a valid shorter chain, but not the
    // one whose head the writer signed (and logged).
    let (covers, head) = last_checkpoint(&trails[0]);
    let cut = tampered(&trails[0], "cut", |l| l.truncate(l.len() - 2));
    let (ok, text) = verify_with(&cut, &["--checkpoint", &format!("{covers}:{head}")]);
    assert!(!ok && text.contains("cut off the end"), "{text}");
    let (ok, text) = verify_with(&trails[0], &["--checkpoint", &format!("{covers}:{head}")]);
    assert!(ok, "{text}");
    // A trail signed by a stranger to the federation is refused with the CA.
    let stranger = tongban_kit::testing::foreign_identity(
        &dir.path().join("stranger"),
        &tongban_runtime::trust::identity::PeerIdentity::Gateway,
    );
    let (ok, text) = verify_with(&trails[0], &["--ca", stranger.ca.to_str().unwrap()]);
    assert!(!ok && text.contains("not the federation's"), "{text}");
}
