//! A city that runs its own node (Shenzhen, 4403, under Guangdong, 44), with gateway
//! and nodes as processes: the province's certificate cannot act for the city by
//! leaving out `tongban-origin-region` — no filing in the city's name, no reading or
//! pushing the city's cases — at the gateway or at the node, while each member acting
//! as itself is served; and a pushed status cannot jump its sequence far ahead (which
//! would freeze the real ones).

#![allow(clippy::unwrap_used)]

use std::time::Duration;
use tongban_kit::testing::SigningChannel;

use tongban_kit::testing::{TestFederation, eventually, medical_filing, processes, start_with};
use tongban_node::platform::{Platform, embedded::SyntheticResident};
use tongban_proto::{
    contract::metadata,
    v1::{
        Applicant, Application, CaseStatus, DeliverApplicationRequest, PushStatusRequest,
        QueryStatusRequest, Stage, gateway_client::GatewayClient, node_client::NodeClient,
    },
};
use tongban_runtime::trust::identity::PeerIdentity;
use tonic::{Code, Request, metadata::MetadataValue};

const WAIT: Duration = Duration::from_secs(20);

pub(super) fn region(prefix: &str) -> PeerIdentity {
    PeerIdentity::from_uri(&format!("spiffe://tongban/region/{prefix}")).unwrap()
}

/// A client of the gateway presenting `prefix`'s certificate.
async fn gateway_as(t: &TestFederation, prefix: &str) -> GatewayClient<SigningChannel> {
    let files = t.tls_files(&region(prefix));
    GatewayClient::new(t.gateway_channel(&files).await.unwrap())
}

/// A client of node `prefix` presenting the gateway's certificate, as the gateway does
/// when it relays for province 44 (see [`as_province`]): signed by 44, as 44's node
/// signs.
async fn node_as_gateway(t: &TestFederation, prefix: &str) -> NodeClient<SigningChannel> {
    let files = t.tls_files(&PeerIdentity::Gateway);
    let url = format!("https://{}", t.fed.node(prefix).unwrap().federation_addr);
    let channel = tongban_kit::testing::channel(&url, &files, &region(prefix))
        .await
        .unwrap()
        .signing_as(t.signer("44"));
    NodeClient::new(channel)
}

pub(super) fn with_meta<T>(message: T, pairs: &[(&'static str, &str)]) -> Request<T> {
    let mut request = Request::new(message);
    for (k, v) in pairs {
        request
            .metadata_mut()
            .insert(*k, MetadataValue::try_from(*v).unwrap());
    }
    request
}

/// The processes of 31, 44 and Shenzhen's own node; cases wait for a clerk, so the
/// only status pushes are the test's.
pub(super) async fn federation(regions: &[&str]) -> TestFederation {
    start_with(regions, |spec| {
        spec.launch = processes("warn");
        spec.auto_approve_after = None;
    })
    .await
}

/// Files at `origin`'s portal and waits until the handling region has taken the case.
pub(super) async fn file_and_deliver(
    t: &TestFederation,
    origin: &str,
    resident: &SyntheticResident,
) -> String {
    let node = t.fed.node(origin).unwrap();
    let receipt = node.portal.file(&medical_filing(resident)).await.unwrap();
    assert_eq!(receipt.status, 201, "{}", receipt.body);
    let case = receipt.body["case_number"].as_str().unwrap().to_owned();
    eventually(WAIT, "delivery", || async {
        let record = node.store.application(case.clone()).await.unwrap()?;
        record.handling_reference.is_some().then_some(())
    })
    .await;
    case
}

/// A complete application numbered `case`, from `origin`, for `resident`, handled by
/// the resident's home region (the one-thing's competent region).
pub(super) async fn application(
    t: &TestFederation,
    case: &str,
    origin: &str,
    resident: &SyntheticResident,
) -> Application {
    let catalog = t.fed.node("31").unwrap().portal.get("/v1/catalog").await;
    let version = catalog.unwrap().body["version"]
        .as_str()
        .unwrap()
        .to_owned();
    Application {
        case_number: case.into(),
        one_thing_id: "medical-treatment-registration".into(),
        catalog_version: version,
        origin_region: origin.into(),
        target_region: resident.id.as_str()[..6].into(),
        applicant: Some(Applicant {
            id_number: resident.id.as_str().into(),
            name: resident.name.clone(),
            phone: "13800138000".into(),
        }),
        form: [
            ("treatment_region", "310115"),
            ("start_date", "2026-12-01"),
            ("reason", "异地长期居住"),
            ("contact_phone", "13800138000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        ..Application::default()
    }
}

pub(super) fn delivery(application: &Application, key: &str) -> Request<DeliverApplicationRequest> {
    let target = application.target_region.clone();
    with_meta(
        DeliverApplicationRequest {
            application: Some(application.clone()),
        },
        &[
            (metadata::TARGET_REGION, &target),
            (metadata::IDEMPOTENCY_KEY, key),
        ],
    )
}

fn query(case: &str, target: &str) -> Request<QueryStatusRequest> {
    let request = QueryStatusRequest {
        case_number: case.into(),
    };
    with_meta(request, &[(metadata::TARGET_REGION, target)])
}

pub(super) fn push(
    case: &str,
    target: &str,
    sequence: u64,
    key: &str,
) -> Request<PushStatusRequest> {
    let request = PushStatusRequest {
        case_number: case.into(),
        status: Some(CaseStatus {
            stage: Stage::Approved as i32,
            detail: "decided".into(),
            updated_at: None,
            sequence,
        }),
        ..PushStatusRequest::default()
    };
    let meta = [
        (metadata::TARGET_REGION, target),
        (metadata::IDEMPOTENCY_KEY, key),
    ];
    with_meta(request, &meta)
}

/// What a call came to: `Ok`, or its code and message.
pub(super) type Outcome = Result<(), (Code, String)>;

pub(super) fn outcome<T>(answer: Result<tonic::Response<T>, tonic::Status>) -> Outcome {
    answer
        .map(|_| ())
        .map_err(|s| (s.code(), s.message().to_owned()))
}

/// Prints every row, then checks each: expected `Ok`, or the expected code.
pub(super) fn check(rows: &[(&str, Option<Code>, Outcome)]) {
    for (what, expected, got) in rows {
        println!("{what}: expected {expected:?}, got {got:?}");
    }
    for (what, expected, got) in rows {
        match (expected, got) {
            (None, Ok(())) => {}
            (Some(code), Err((got, _))) if got == code => {}
            _ => panic!("{what}: expected {expected:?}, got {got:?}"),
        }
    }
}

/// The stored status (stage, sequence) of `case` at `prefix`'s node, which filed it.
pub(super) async fn stored_status(t: &TestFederation, prefix: &str, case: &str) -> (i32, u64) {
    let node = t.fed.node(prefix).unwrap();
    let record = node.store.application(case.into()).await.unwrap().unwrap();
    (record.status.stage, record.status.sequence)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_province_cannot_act_for_a_city_by_leaving_out_the_origin() {
    let t = federation(&["310000", "440000", "440300"]).await;
    let shanghai_resident = t.residents("31")[0].clone();
    let shenzhen_resident = t.residents("4403")[0].clone();
    // Filed by Shenzhen, handled by Shanghai; filed by Shanghai, handled by Shenzhen.
    let by_shenzhen = file_and_deliver(&t, "4403", &shanghai_resident).await;
    let for_shenzhen = file_and_deliver(&t, "31", &shenzhen_resident).await;
    let before = stored_status(&t, "31", &for_shenzhen).await;
    let (mut province, mut city) = (gateway_as(&t, "44").await, gateway_as(&t, "4403").await);

    // The province, with no origin claim, in Shenzhen's name.
    let to_shanghai = application(&t, "440305-20261203-90000001", "440305", &shanghai_resident);
    let to_shanghai = to_shanghai.await;
    let to_shenzhen = application(&t, "440305-20261203-90000002", "440305", &shenzhen_resident);
    let to_shenzhen = to_shenzhen.await;
    let denied = Some(Code::PermissionDenied);
    let mut rows = vec![
        (
            "44 delivers as 440305 to 31",
            denied,
            outcome(
                province
                    .deliver_application(delivery(&to_shanghai, "d:1"))
                    .await,
            ),
        ),
        (
            "44 delivers as 440305 to Shenzhen",
            denied,
            outcome(
                province
                    .deliver_application(delivery(&to_shenzhen, "d:2"))
                    .await,
            ),
        ),
        (
            "44 reads a case Shenzhen filed",
            denied,
            outcome(province.query_status(query(&by_shenzhen, "310000")).await),
        ),
        (
            "44 pushes a huge sequence for a case Shenzhen handles",
            denied,
            outcome(
                province
                    .push_status(push(&for_shenzhen, "310000", i64::MAX as u64, "p:1"))
                    .await,
            ),
        ),
    ];
    let after_attacks = stored_status(&t, "31", &for_shenzhen).await;

    // Each acting as itself, with no claim either: served.
    let own = application(&t, "440305-20261203-90000003", "440305", &shanghai_resident).await;
    let provinces = application(&t, "440100-20261203-90000004", "440100", &shanghai_resident);
    let provinces = provinces.await;
    rows.extend([
        (
            "Shenzhen reads its own case",
            None,
            outcome(city.query_status(query(&by_shenzhen, "310000")).await),
        ),
        (
            "Shenzhen delivers as 440305",
            None,
            outcome(city.deliver_application(delivery(&own, "d:3")).await),
        ),
        (
            "44 delivers as 440100",
            None,
            outcome(
                province
                    .deliver_application(delivery(&provinces, "d:4"))
                    .await,
            ),
        ),
        (
            "Shenzhen pushes the next status of its case",
            None,
            outcome(
                city.push_status(push(&for_shenzhen, "310000", before.1 + 1, "p:2"))
                    .await,
            ),
        ),
    ]);
    let after = stored_status(&t, "31", &for_shenzhen).await;
    println!(
        "{for_shenzhen} at 31: {before:?}, after the province {after_attacks:?}, now {after:?}"
    );
    check(&rows);

    // Nothing of the province's reached a platform or a store.
    assert_eq!(after_attacks, before, "the province's push was applied");
    for (prefix, case) in [("31", &to_shanghai), ("4403", &to_shenzhen)] {
        let platform = &t.fed.node(prefix).unwrap().platform;
        let found = platform.case(&case.case_number).await.unwrap();
        assert!(
            found.is_none(),
            "{} reached {prefix}'s platform",
            case.case_number
        );
    }
    let shanghai = &t.fed.node("31").unwrap().platform;
    assert!(shanghai.case(&own.case_number).await.unwrap().is_some());
    assert_eq!(stored_status(&t, "31", &for_shenzhen).await.1, before.1 + 1);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_status_cannot_jump_its_sequence() {
    let t = federation(&["310000", "440000"]).await;
    let case = file_and_deliver(&t, "31", &t.residents("44")[0]).await;
    let before = stored_status(&t, "31", &case).await;
    let mut handler = gateway_as(&t, "44").await;
    let far = before.1 + 1_000_001;
    let err = handler
        .push_status(push(&case, "310000", far, "p:far"))
        .await
        .unwrap_err();
    println!("a push {far} for a case at {}: {err:?}", before.1);
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("status.sequence"),
        "{}",
        err.message()
    );
    assert_eq!(stored_status(&t, "31", &case).await, before);
    // The real ones still apply, up to the bound.
    let next = before.1 + 1;
    let applied = handler
        .push_status(push(&case, "310000", next, "p:next"))
        .await;
    assert!(applied.unwrap().into_inner().applied);
    let bound = next + 1_000_000;
    let applied = handler
        .push_status(push(&case, "310000", bound, "p:bound"))
        .await;
    assert!(applied.unwrap().into_inner().applied);
    assert_eq!(stored_status(&t, "31", &case).await.1, bound);
    t.shutdown().await;
}

/// `request` as a gateway sends it for 44, with `carve_outs` (Shenzhen's 4403).
fn as_province<T>(mut request: Request<T>, carve_outs: &'static str) -> Request<T> {
    let md = request.metadata_mut();
    md.insert(metadata::VERIFIED_ORIGIN, MetadataValue::from_static("44"));
    md.insert(
        metadata::VERIFIED_CARVE_OUTS,
        MetadataValue::from_static(carve_outs),
    );
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_a_code_carved_out_of_the_verified_origin() {
    let t = federation(&["310000", "440000", "440300"]).await;
    let shanghai_resident = t.residents("31")[0].clone();
    let by_shenzhen = file_and_deliver(&t, "4403", &shanghai_resident).await;
    let mut shanghai = node_as_gateway(&t, "31").await;
    let in_shenzhen = application(&t, "440305-20261203-90000011", "440305", &shanghai_resident);
    let in_shenzhen = in_shenzhen.await;
    let in_guangzhou = application(&t, "440100-20261203-90000012", "440100", &shanghai_resident);
    let in_guangzhou = in_guangzhou.await;
    let rows = [
        (
            "a delivery as 440305",
            Some(Code::PermissionDenied),
            outcome(
                shanghai
                    .deliver_application(as_province(delivery(&in_shenzhen, "n:1"), "4403"))
                    .await,
            ),
        ),
        (
            "a case Shenzhen filed",
            Some(Code::PermissionDenied),
            outcome(
                shanghai
                    .query_status(as_province(query(&by_shenzhen, "310000"), "4403"))
                    .await,
            ),
        ),
        (
            "a malformed carve-out",
            Some(Code::InvalidArgument),
            outcome(
                shanghai
                    .query_status(as_province(query(&by_shenzhen, "310000"), "31"))
                    .await,
            ),
        ),
        (
            "a delivery as 440100, the province's own",
            None,
            outcome(
                shanghai
                    .deliver_application(as_province(delivery(&in_guangzhou, "n:2"), "4403"))
                    .await,
            ),
        ),
    ];
    check(&rows);
    let platform = &t.fed.node("31").unwrap().platform;
    let found = platform.case(&in_shenzhen.case_number).await.unwrap();
    assert!(
        found.is_none(),
        "the carved-out delivery reached 31's platform"
    );
    t.shutdown().await;
}
