//! A province's own platform behind its node, over the HTTP contract: the kit starts
//! the reference platform (its own PKI, mutual TLS, HMAC signatures) and the node's
//! `[platform] kind = "http"` adapter. A whole case crosses it — filed at 31, decided by
//! a clerk through 44's platform's API, the decision back at 31 — also while 44's node
//! is down; a license imported from a file at 11's platform is recognized through the
//! gateway, and a file with a bad row imports nothing and names the row.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tongban_kit::testing::{TestFederation, cli_binary, eventually, medical_filing, start_with};
use tongban_proto::v1::{
    LookupLicenseRequest, LookupPurpose, VerdictOutcome, gateway_client::GatewayClient,
};
use tongban_runtime::trust::identity::PeerIdentity;

const WAIT: Duration = Duration::from_secs(30);

/// 11, 31, 44 with 11 and 44 behind province platforms over HTTP, no timed clerk.
async fn federation() -> TestFederation {
    start_with(&["110000", "310000", "440000"], |spec| {
        spec.http_platforms = vec!["11".into(), "44".into()];
        spec.auto_approve_after = None;
    })
    .await
}

/// Files at 31 for a resident of 44; returns the case number once 44 acknowledged it.
async fn file_for_44(t: &TestFederation, resident: usize) -> String {
    let n31 = t.fed.node("31").unwrap();
    let receipt = n31
        .portal
        .file(&medical_filing(&t.residents("44")[resident]))
        .await
        .unwrap();
    assert_eq!(receipt.status, 201, "{}", receipt.body);
    let case = receipt.body["case_number"].as_str().unwrap().to_owned();
    eventually(WAIT, "44 acknowledged the case", || async {
        let record = n31.store.application(case.clone()).await.unwrap()?;
        record.handling_reference.is_some().then_some(())
    })
    .await;
    case
}

/// Waits until 31's portal shows `stage` for `case`; returns the status body.
async fn stage_at_31(t: &TestFederation, case: &str, stage: &str) -> serde_json::Value {
    let n31 = t.fed.node("31").unwrap();
    eventually(WAIT, &format!("{case} {stage} at 31"), || async {
        let status = n31.portal.status(case).await.ok()?;
        (status.body["stage"] == stage).then_some(status.body)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_filed_at_31_is_decided_by_a_clerk_at_44s_platform_and_the_decision_returns() {
    let t = federation().await;
    let case = file_for_44(&t, 2).await;
    let platform = t.fed.platform("44").unwrap();

    // The clerk sees it waiting, in the platform's own status code.
    let waiting = platform.clerk.get("/clerk/v1/cases").await.unwrap();
    assert_eq!(waiting.status, 200, "{}", waiting.body);
    let listed = waiting.body["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["case_number"] == case.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{case} not awaiting the clerk: {}", waiting.body));
    assert_eq!(listed["status"], "已接件", "{listed}");

    let accepted = platform.decide(&case, "accept", "").await.unwrap();
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    stage_at_31(&t, &case, "in_review").await;
    let approved = platform.decide(&case, "approve", "准予登记").await.unwrap();
    assert_eq!(approved.status, 200, "{}", approved.body);
    let status = stage_at_31(&t, &case, "approved").await;
    assert!(
        status["detail"].as_str().unwrap().contains("准予登记"),
        "{status}"
    );

    // A decided case takes no other decision: the machine says so, naming the states.
    let again = platform.decide(&case, "reject", "重复").await.unwrap();
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(
        again.body.to_string().contains("approved"),
        "{}",
        again.body
    );

    // Exactly one case at 44's platform.
    let db = platform.database().unwrap();
    assert!(db.payload(&case).await.unwrap().is_some());
    assert_eq!(
        rows_of(&platform.files.database, &case).await,
        1,
        "the case is held once at 44's platform"
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_made_while_44s_node_is_down_reaches_31_after_it_restarts() {
    let mut t = federation().await;
    let case = file_for_44(&t, 3).await;
    t.fed.stop_node("44").await.unwrap();

    let platform = t.fed.platform("44").unwrap();
    assert_eq!(
        platform.decide(&case, "accept", "").await.unwrap().status,
        200
    );
    let rejected = platform
        .decide(&case, "reject", "材料不全，不予受理")
        .await
        .unwrap();
    assert_eq!(rejected.status, 200, "{}", rejected.body);

    t.fed.restart_node("44").await.unwrap();
    let status = stage_at_31(&t, &case, "rejected").await;
    assert!(
        status["detail"].as_str().unwrap().contains("材料不全"),
        "{status}"
    );
    t.shutdown().await;
}

pub(crate) async fn rows_of(database: &std::path::Path, case: &str) -> i64 {
    let (db, case) = (database.to_owned(), case.to_owned());
    tokio::task::spawn_blocking(move || {
        rusqlite::Connection::open(db)
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM cases WHERE case_number = ?1",
                [case],
                |r| r.get(0),
            )
            .unwrap()
    })
    .await
    .unwrap()
}

/// `tongban platform import --config <platform> --licenses <file>`, as a user runs it.
fn import(t: &TestFederation, prefix: &str, licenses: &std::path::Path) -> std::process::Output {
    std::process::Command::new(cli_binary())
        .args(["platform", "import", "--config"])
        .arg(&t.fed.platform(prefix).unwrap().files.config_path)
        .arg("--licenses")
        .arg(licenses)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_license_imported_from_a_file_at_11_is_recognized_and_a_bad_file_imports_nothing() {
    let t = federation().await;
    let holder = &t.residents("44")[5];
    let header = "license_id,license_type,holder_id_number,holder_name,issuing_region,valid_from,valid_until,fields";
    let good = format!(
        "110000-MC-7700001,marriage_certificate,{},{},110000,2024-05-20,,\"{{\"\"registration_region\"\": \"\"110105\"\"}}\"",
        holder.id.as_str(),
        holder.name
    );

    // A file with a bad row (line 3: a wrong check character) imports nothing.
    let mut wrong = holder.id.as_str().to_owned();
    let last = if wrong.ends_with('0') { "1" } else { "0" };
    wrong.replace_range(17.., last);
    let bad_row = format!(
        "110000-MC-7700002,marriage_certificate,{wrong},{},110000,2024-05-20,,",
        holder.name
    );
    let bad = t.dir.path().join("licenses-bad.csv");
    std::fs::write(&bad, format!("{header}\n{good}\n{bad_row}\n")).unwrap();
    let out = import(&t, "11", &bad);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "a bad file was imported: {said}");
    assert!(said.contains("line 3"), "the bad row is named: {said}");
    assert!(
        said.contains("holder_id_number"),
        "the bad field is named: {said}"
    );
    assert!(said.contains("nothing was imported"), "{said}");
    assert!(
        !said.contains(&wrong),
        "the ID number is not echoed: {said}"
    );
    let db = t.fed.platform("11").unwrap().database().unwrap();
    let none = tongban_node::platform::Purpose::default();
    use tongban_node::platform::LicenseRegistry;
    assert!(
        db.license("110000-MC-7700001", &none)
            .await
            .unwrap()
            .is_none(),
        "the good row of a bad file was not imported either"
    );

    // The good file imports, and 31 recognizes the license through the gateway.
    let good_file = t.dir.path().join("licenses.csv");
    std::fs::write(&good_file, format!("{header}\n{good}\n")).unwrap();
    let out = import(&t, "11", &good_file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut gateway = GatewayClient::new(
        t.gateway_channel(
            &t.tls_files(&PeerIdentity::from_uri("spiffe://tongban/region/31").unwrap()),
        )
        .await
        .unwrap(),
    );
    let verdict = gateway
        .lookup_license(LookupLicenseRequest {
            license_id: "110000-MC-7700001".into(),
            license_type: String::new(),
            purpose: Some(LookupPurpose {
                applicant_request: Some(tongban_proto::rules::consent::request(
                    "portal",
                    1_780_000_000_000,
                )),
                one_thing_id: "household-transfer".into(),
                case_number: "310000-20261201-00000099".into(),
            }),
            material_id: "marriage_certificate".into(),
            holder_id_number: holder.id.as_str().into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        verdict.outcome,
        VerdictOutcome::Recognized as i32,
        "{verdict:?}"
    );
    // 11's platform recorded the purpose of the lookup it answered.
    let purposes = db.purposes(10).await.unwrap();
    assert!(
        purposes
            .iter()
            .any(|p| format!("{p:?}").contains("household-transfer")),
        "{purposes:?}"
    );
    t.shutdown().await;
}
