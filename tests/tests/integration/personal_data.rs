//! A person's data read only by whom it should be, tried as an outsider would: receipts
//! read by walking sequential case numbers, an access log read by guessing a name for a
//! known ID number, a license read by its id alone with no holder named, and values pasted
//! into a URL quoted back in an error.

// Test helpers may panic: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::json;
use tongban_kit::testing::{TestFederation, medical_filing, start};
use tongban_node::{
    access_inquiry::{PROOF_HEADER, proof},
    portal_client::PortalClient,
};
use tongban_proto::{
    contract::metadata,
    v1::{FetchLicenseRequest, node_client::NodeClient},
};
use tongban_runtime::trust::identity::PeerIdentity;
use tonic::{Code, metadata::MetadataValue};

use super::recognition::{client_at, license_of, lookup, purpose};

/// An ID number pasted where a case number goes.
const PASTED_ID: &str = "110105194912310021";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_is_read_only_with_its_receipts_token() {
    let t = start(&["310000", "440000"]).await;
    let n31 = &t.fed.node("31").unwrap().portal;
    let residents = t.residents("44");
    let mut receipts = Vec::new();
    for resident in residents.iter().take(2) {
        let r = n31.file(&medical_filing(resident)).await.unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
        let token = r.body["status_token"].as_str().unwrap().to_owned();
        assert_eq!(token.len(), 64);
        receipts.push((r.body["case_number"].as_str().unwrap().to_owned(), token));
    }
    let (case, token) = &receipts[0];
    let (next_case, next_token) = &receipts[1];

    // Anyone else's client, walking case numbers: no token, another case's token, a
    // made-up one — all the same 404, as for a case that does not exist.
    let stranger = PortalClient::new(n31.base());
    let nowhere = stranger
        .status_with_token("310000-20260101-00000001", token)
        .await
        .unwrap();
    assert_eq!(nowhere.status, 404);
    for (asked, presented) in [
        (case.as_str(), ""),
        (case.as_str(), next_token.as_str()),
        (next_case.as_str(), token.as_str()),
        (case.as_str(), &"0".repeat(64)),
    ] {
        let answer = stranger.status_with_token(asked, presented).await.unwrap();
        assert_eq!(answer.status, 404, "{asked} with {presented:?}");
        assert_eq!(answer.body, nowhere.body);
    }
    // The receipt's holder reads it.
    let read = stranger.status_with_token(case, token).await.unwrap();
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["case_number"], case.as_str());

    // A value pasted into the URL is never quoted back.
    let pasted = stranger.status_with_token(PASTED_ID, token).await.unwrap();
    assert_eq!(pasted.status, 404);
    assert!(
        !pasted.body.to_string().contains(PASTED_ID),
        "{}",
        pasted.body
    );
    t.shutdown().await;
}

/// `POST /v1/access-log` with `proof` (if any) in the portal's header.
async fn inquiry(
    portal: &PortalClient,
    id_number: &str,
    name: &str,
    proof: Option<&str>,
) -> tongban_node::portal_client::PortalResponse {
    let body = bytes::Bytes::from(json!({"id_number": id_number, "name": name}).to_string());
    let headers: Vec<(&str, &str)> = proof.map(|p| (PROOF_HEADER, p)).into_iter().collect();
    portal
        .send_with("POST", "/v1/access-log", body, &headers)
        .await
        .unwrap()
}

fn gateway_url(t: &TestFederation) -> String {
    format!("https://{}", t.fed.gateway().federation_addr)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_a_name_for_a_known_number_is_throttled_and_tells_nothing() {
    let t = start(&["310000", "440000"]).await;
    let n44 = t.fed.node("44").unwrap();
    let person = t.residents("44")[0].clone();
    let id = person.id.as_str();
    // Looked up once, so the person's own log has an entry.
    let license = license_of(&t, "44", id, "household_register").await;
    let mut gateway = client_at(&t, &gateway_url(&t), "31").await;
    let verdict = lookup(
        &mut gateway,
        &license,
        "household_register",
        "household-transfer",
        id,
    )
    .await;
    assert_eq!(verdict.license_id, license);

    // Straight to the portal API, as an outsider would: no proof, a proof made with a
    // wrong secret, a proof for another number, an old one.
    let portal = &n44.portal;
    let secret = std::fs::read(t.dir.path().join("pki/portal-44.key")).unwrap();
    let now = unix_now();
    for bad in [
        None,
        Some(proof(b"a secret that is not the portal's one", id, now)),
        Some(proof(&secret, "110105194912310013", now)),
        Some(proof(&secret, id, now - 600)),
    ] {
        let answer = inquiry(portal, id, &person.name, bad.as_deref()).await;
        assert_eq!(answer.status, 401, "{bad:?}: {}", answer.body);
        assert!(answer.body["entries"].is_null());
    }

    // Through the portal, with its proof: 144 name guesses in a row.
    let started = Instant::now();
    let (mut answered, mut throttled) = (Vec::new(), 0);
    for i in 0..144 {
        let guess = format!("张{}", char::from_u32(0x4E00 + i).unwrap());
        let answer = n44.access_log(id, &guess).await.unwrap();
        match answer.status {
            200 => answered.push(answer.body),
            429 => throttled += 1,
            other => panic!("guess {i}: {other} {}", answer.body),
        }
    }
    println!(
        "144 guesses in {:?}: {} answered, {throttled} throttled",
        started.elapsed(),
        answered.len()
    );
    assert_eq!(answered.len(), 5, "the burst of per_person_per_minute");
    assert_eq!(throttled, 139);
    // A wrong name reads what nobody reads: an empty log, in the same shape.
    for body in &answered {
        assert_eq!(body["entries"], json!([]));
        assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    }
    // The person, once the minute's allowance is back, reads their entry.
    let right = eventually_allowed(&t, id, &person.name).await;
    let entries = right["entries"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["kind"] == "license"), "{right}");
    // A number nobody holds answers exactly like a wrong name.
    let nobody = n44
        .access_log("440303199001010012", &person.name)
        .await
        .unwrap();
    if nobody.status == 200 {
        assert_eq!(nobody.body["entries"], json!([]));
    }
    t.shutdown().await;
}

/// The person's own log once their inquiries are allowed again (up to a minute).
async fn eventually_allowed(t: &TestFederation, id: &str, name: &str) -> serde_json::Value {
    let n44 = t.fed.node("44").unwrap();
    let deadline = Instant::now() + Duration::from_secs(75);
    loop {
        let answer = n44.access_log(id, name).await.unwrap();
        if answer.status == 200 {
            return answer.body;
        }
        assert_eq!(answer.status, 429, "{}", answer.body);
        assert!(Instant::now() < deadline, "never allowed again");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_license_is_read_only_for_its_holder() {
    let t = start(&["310000", "440000"]).await;
    let holder = t.residents("44")[0].id.as_str().to_owned();
    let license = license_of(&t, "44", &holder, "household_register").await;

    // At the gateway: a lookup naming no holder is refused before any cache or issuer.
    let mut gateway = client_at(&t, &gateway_url(&t), "31").await;
    let refused = gateway
        .lookup_license(tongban_proto::v1::LookupLicenseRequest {
            license_id: license.clone(),
            license_type: String::new(),
            purpose: purpose("household-transfer"),
            material_id: "household_register".into(),
            holder_id_number: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("holder_id_number"),
        "{refused:?}"
    );
    // Once the holder has been looked up (cached), still refused without the holder.
    let verdict = lookup(
        &mut gateway,
        &license,
        "household_register",
        "household-transfer",
        &holder,
    )
    .await;
    assert_eq!(verdict.license_id, license);
    let again = gateway
        .lookup_license(tongban_proto::v1::LookupLicenseRequest {
            license_id: license.clone(),
            material_id: "household_register".into(),
            purpose: purpose("household-transfer"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::InvalidArgument);

    // At the issuer, with the gateway's own certificate: refused too.
    let files = t.tls_files(&PeerIdentity::Gateway);
    let url = format!("https://{}", t.fed.node("44").unwrap().federation_addr);
    let identity = PeerIdentity::from_uri("spiffe://tongban/region/44").unwrap();
    let channel = tongban_kit::testing::channel(&url, &files, &identity)
        .await
        .unwrap();
    let mut issuer = NodeClient::new(channel);
    let mut request = tonic::Request::new(FetchLicenseRequest {
        license_id: license,
        purpose: purpose("household-transfer"),
        holder_id_number: String::new(),
    });
    request
        .metadata_mut()
        .insert(metadata::VERIFIED_ORIGIN, MetadataValue::from_static("31"));
    let refused = issuer.fetch_license(request).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    t.shutdown().await;
}

/// A counter of the gateway's `/metrics`, 0 when absent.
async fn gateway_counter(t: &TestFederation, series: &str) -> f64 {
    let admin = PortalClient::new(format!("http://{}", t.fed.gateway().admin_addr.unwrap()));
    let text = admin.get("/metrics").await.unwrap().body;
    let text = text.as_str().unwrap_or_default().to_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_answered_from_the_gateways_cache_reaches_the_persons_access_log() {
    let t = start(&["110000", "310000", "440000"]).await;
    let person = t.residents("44")[1].clone();
    let id = person.id.as_str();
    let license = license_of(&t, "44", id, "household_register").await;
    let sources = look_up_from_31_then_11(&t, &gateway_url(&t), &person, &license).await;
    // Shanghai asks first (the issuer answers and records it), Beijing next: answered
    // from the gateway's cache, which the issuer never sees.
    use tongban_proto::v1::VerdictSource;
    let (issuer, cache) = (VerdictSource::Issuer as i32, VerdictSource::Cache as i32);
    assert_eq!(sources, [issuer, cache, issuer, cache]);

    // Reported in a batch within a second or so.
    let delivered = "tongban_gateway_access_reports_total{outcome=\"delivered\"}";
    let deadline = Instant::now() + Duration::from_secs(20);
    while gateway_counter(&t, delivered).await < 2.0 {
        assert!(
            Instant::now() < deadline,
            "the reports were never delivered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    every_lookup_in_the_log(&t, &person).await;
    assert_eq!(
        gateway_counter(
            &t,
            "tongban_gateway_access_reports_total{outcome=\"dropped\"}"
        )
        .await,
        0.0
    );
    t.shutdown().await;
}

/// The lookups of `person`'s data at 44: their license, asked by 31 then by 11, and
/// their identity, asked by 31 then by 11; each answer's source, in that order.
async fn look_up_from_31_then_11(
    t: &TestFederation,
    url: &str,
    person: &tongban_node::platform::embedded::SyntheticResident,
    license: &str,
) -> Vec<i32> {
    let id = person.id.as_str();
    let mut sources = Vec::new();
    for prefix in ["31", "11"] {
        let mut client = client_at(t, url, prefix).await;
        let what = ("household_register", "household-transfer");
        sources.push(
            lookup(&mut client, license, what.0, what.1, id)
                .await
                .source,
        );
    }
    for prefix in ["31", "11"] {
        let mut client = client_at(t, url, prefix).await;
        let request = tongban_proto::v1::VerifyIdentityRequest {
            id_number: id.to_owned(),
            name: person.name.clone(),
            purpose: purpose("household-transfer"),
        };
        let verdict = client.verify_identity(request).await.unwrap().into_inner();
        sources.push(verdict.source);
    }
    sources
}

/// 44's log of `person` lists the four lookups of `look_up_from_31_then_11`, each once.
async fn every_lookup_in_the_log(
    t: &TestFederation,
    person: &tongban_node::platform::embedded::SyntheticResident,
) {
    let id = person.id.as_str();
    let log = t
        .fed
        .node("44")
        .unwrap()
        .access_log(id, &person.name)
        .await
        .unwrap();
    assert_eq!(log.status, 200, "{}", log.body);
    let entries = log.body["entries"].as_array().unwrap();
    for (kind, region) in [
        ("license", "31"),
        ("license", "11"),
        ("identity", "31"),
        ("identity", "11"),
    ] {
        assert!(
            entries
                .iter()
                .any(|e| e["kind"] == kind && e["requester_region"] == region),
            "no {kind} lookup by {region} in {entries:?}"
        );
    }
    assert_eq!(entries.len(), 4, "{entries:?}");
    // Each with the applicant's request its lookup carried, those the gateway answered
    // from its cache too (their reports carry it).
    for e in entries {
        assert_eq!(e["applicant_request"]["channel"], "portal", "{e}");
        assert_eq!(
            e["applicant_request"]["requested_ms"], 1_780_000_000_000i64,
            "{e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_one_address_every_replicas_lookups_reach_the_log_once() {
    let t = tongban_kit::testing::start_with(&["110000", "310000", "440000"], |spec| {
        spec.gateways = 2;
        spec.gateways_behind_one_address = true;
    })
    .await;
    let person = t.residents("44")[2].clone();
    let license = license_of(&t, "44", person.id.as_str(), "household_register").await;
    // Through the one address, each client's connection goes to the next replica: the
    // second lookup is a miss at the other replica (the issuer records it) or a hit at
    // the same one (reported); either way the person's log holds it, once.
    let front = t.fed.gateway_front.as_ref().unwrap().addr();
    let sources = look_up_from_31_then_11(&t, &format!("https://{front}"), &person, &license).await;
    println!("sources behind one address: {sources:?}");
    let n44 = t.fed.node("44").unwrap();
    let key = n44.store.id_hash_key().await.unwrap();
    let hash = person.id.keyed_hash(&key);
    let deadline = Instant::now() + Duration::from_secs(20);
    while n44.store.access_count(hash.clone()).await.unwrap() < 4 {
        assert!(
            Instant::now() < deadline,
            "not every lookup reached the log"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Two more passes of the replicas' delivery: nothing recorded twice.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    every_lookup_in_the_log(&t, &person).await;
    t.shutdown().await;
}
