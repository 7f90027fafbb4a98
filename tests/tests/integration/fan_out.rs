//! A filing's materials cannot fan out into lookups: the shared rule set
//! (`proto/src/rules/standard.rs` `materials`) takes each material once and no more
//! entries than the one-thing has materials, at the portal before anything is asked of
//! the federation, and again where a delivery arrives.
//!
//! One license cited as many times as a portal request holds (the portal takes at most
//! 256 KiB: about 3,900 citations) is refused 422 naming `materials` at once, and the
//! gateway sees no lookup for it nor the issuer any access; cited 10,000 times in a
//! delivery, the handling node refuses it naming `application.materials`. Cited once
//! it is accepted with one lookup; cited twice identically, the repeat is passed over
//! (accepted, still one lookup); cited again with another license id, refused naming
//! the repeat.

// Test helpers may panic: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use prost::Message;
use serde_json::{Value, json};
use tongban_kit::testing::{TestFederation, medical_filing, start};
use tongban_node::portal_client::PortalClient;
use tongban_proto::{
    contract::metadata,
    rules::resident_id::ResidentId,
    v1::{Application, DeliverApplicationRequest, gateway_client::GatewayClient},
};
use tongban_runtime::trust::identity::PeerIdentity;
use tonic::{Code, Request, metadata::MetadataValue};

/// The portal's body limit (`node/src/portal.rs`).
const PORTAL_MAX_BODY: usize = 256 * 1024;

/// The resident ID card license 44's register holds for `holder`.
async fn id_card_license(t: &TestFederation, holder: &ResidentId) -> String {
    let node = t.fed.node("44").unwrap();
    let key = node.store.id_hash_key().await.unwrap();
    node.platform
        .licenses_of_resident(holder, &key)
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.license_type == "resident_id_card")
        .unwrap()
        .license_id
}

/// The gateway's `LookupLicense` calls so far, over every origin, target and code.
async fn gateway_lookups(admin: &PortalClient) -> u64 {
    let metrics = admin.get("/metrics").await.unwrap();
    metrics
        .body
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| {
            l.starts_with("tongban_gateway_calls_total{") && l.contains("method=\"LookupLicense\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A medical treatment filing for `resident` citing their ID card `license` for each
/// of `references`.
fn citing(resident: &Value, references: &[&str]) -> Value {
    let mut filing = resident.clone();
    filing["materials"] = references
        .iter()
        .map(|r| json!({"material_id": "id_card", "source": "license", "reference": r}))
        .collect();
    filing
}

/// How many citations of `license` fit in one portal request.
fn most_that_fit(base: &Value, license: &str) -> usize {
    let one = citing(base, &[license]).to_string().len();
    let two = citing(base, &[license, license]).to_string().len();
    // Less a KiB for headroom under the limit.
    (PORTAL_MAX_BODY - 1024 - one) / (two - one) + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_material_cited_thousands_of_times_is_refused_before_any_lookup() {
    let t = start(&["310000", "440000"]).await;
    let n31 = t.fed.node("31").unwrap();
    let n44 = t.fed.node("44").unwrap();
    let admin = PortalClient::new(format!("http://{}", t.fed.gateway().admin_addr.unwrap()));
    let resident = t.residents("44")[0].clone();
    let holder_hash = resident
        .id
        .keyed_hash(&n44.store.id_hash_key().await.unwrap());
    let license = id_card_license(&t, &resident.id).await;
    let base = medical_filing(&resident);
    let counts = || async {
        (
            gateway_lookups(&admin).await,
            // What 44 answered itself: the gateway's reports of its cache hits land in
            // half-second batches and would move the count at random.
            n44.store.answered_count(holder_hash.clone()).await.unwrap(),
        )
    };

    // As many citations of one license as the portal takes in one request.
    let times = most_that_fit(&base, &license);
    let flood = citing(&base, &vec![license.as_str(); times]);
    assert!(flood.to_string().len() <= PORTAL_MAX_BODY);
    let before = counts().await;
    let started = Instant::now();
    let r = n31.portal.file(&flood).await.unwrap();
    let took = started.elapsed();
    let after = counts().await;
    assert_eq!(r.status, 422, "{}", r.body);
    let fields = r.body["error"]["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 1, "{}", r.body);
    assert_eq!(fields[0]["field"], "materials");
    let problem = fields[0]["problem"].as_str().unwrap();
    assert!(!problem.contains(&license), "{problem}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(after, before, "(gateway lookups, issuer accesses) moved");

    // Cited once: accepted with one lookup.
    let once = n31.portal.file(&citing(&base, &[&license])).await.unwrap();
    assert_eq!(once.status, 201, "{}", once.body);
    let after_once = counts().await;
    assert_eq!(after_once.0 - after.0, 1, "lookups for one citation");
    // Cited twice, identically: the repeat is passed over.
    let twice = n31
        .portal
        .file(&citing(&base, &[&license, &license]))
        .await
        .unwrap();
    assert_eq!(twice.status, 201, "{}", twice.body);
    let after_twice = counts().await;
    assert_eq!(
        after_twice.0 - after_once.0,
        1,
        "lookups for a repeated citation"
    );
    // Cited again with another license id: refused, naming the repeat.
    let other = format!("{license}0");
    let conflict = n31
        .portal
        .file(&citing(&base, &[&license, &other]))
        .await
        .unwrap();
    assert_eq!(conflict.status, 422, "{}", conflict.body);
    assert_eq!(
        conflict.body["error"]["fields"][0]["field"],
        "materials[1].reference"
    );
    assert_eq!(counts().await, after_twice);

    // Cited 10,000 times in a delivery (31's accepted application, materials
    // multiplied): the handling node refuses it by the same rule.
    let case = once.body["case_number"].as_str().unwrap().to_owned();
    let record = n31.store.application(case).await.unwrap().unwrap();
    let mut application = Application::decode(record.payload.as_slice()).unwrap();
    let cited = application
        .materials
        .iter()
        .find(|m| m.material_id == "id_card")
        .unwrap()
        .clone();
    application.materials = vec![cited; 10_000];
    let mut request = Request::new(DeliverApplicationRequest {
        application: Some(application),
    });
    let md = request.metadata_mut();
    md.insert(
        metadata::TARGET_REGION,
        MetadataValue::from_static("440000"),
    );
    md.insert(
        metadata::IDEMPOTENCY_KEY,
        MetadataValue::from_static("fan-out-10000"),
    );
    let region31 = PeerIdentity::from_uri("spiffe://tongban/region/31").unwrap();
    let mut gateway = GatewayClient::new(t.gateway_channel(&t.tls_files(&region31)).await.unwrap());
    let started = Instant::now();
    let status = gateway.deliver_application(request).await.unwrap_err();
    let delivery_took = started.elapsed();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("application.materials"),
        "{status:?}"
    );
    assert_eq!(counts().await, after_twice);

    println!(
        "one license cited {times} times at the portal: 422 in {took:?}, lookups and issuer \
         accesses before/after {before:?}/{after:?}; cited once: +{} lookup, twice: +{} \
         lookup; 10,000 times in a delivery: {:?} in {delivery_took:?}",
        after_once.0 - after.0,
        after_twice.0 - after_once.0,
        status.code(),
    );
    t.shutdown().await;
}
