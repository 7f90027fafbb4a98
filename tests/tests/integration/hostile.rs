//! Hostile input, table-driven, against a real federation over real mTLS: well over 100
//! distinct bad inputs across the portal (HTTP+JSON), the gateway (gRPC metadata and
//! messages) and the node service (deliveries the gateway passes on). Each row names
//! its expected status or code and, where there is one, the field named in the answer;
//! the federation must answer every row precisely, never echo the personal data in
//! it, and keep serving (no panic: a good filing still works at the end).

#![allow(clippy::unwrap_used)]

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;
use serde_json::{Value, json};
use tongban_kit::testing::{TestFederation, medical_filing, start};
use tongban_proto::{
    contract::codec::StrictCodec,
    contract::metadata,
    v1::{
        Applicant, Application, DeliverApplicationRequest, DeliverApplicationResponse,
        LookupLicenseRequest, LookupPurpose, VerifyIdentityRequest, gateway_client::GatewayClient,
    },
};
use tongban_runtime::trust::identity::PeerIdentity;
use tonic::{Code, Request, metadata::MetadataValue, transport::Channel};

/// Characters no name or text field may hold, with what they are.
const BAD_CHARACTERS: [(&str, &str); 12] = [
    ("NUL", "\u{0}"),
    ("BEL", "\u{7}"),
    ("BS", "\u{8}"),
    ("TAB", "\t"),
    ("LF", "\n"),
    ("CR", "\r"),
    ("ESC", "\u{1b}"),
    ("DEL", "\u{7f}"),
    ("NEL", "\u{85}"),
    ("RLO U+202E", "\u{202E}"),
    ("RLI U+2067", "\u{2067}"),
    ("RLM U+200F", "\u{200F}"),
];

/// One portal row: a description, the request, the expected status and field.
struct PortalCase {
    what: String,
    body: Bytes,
    headers: Vec<(&'static str, String)>,
    status: u16,
    field: Option<String>,
}

fn filing_with(base: &Value, edit: impl FnOnce(&mut Value)) -> Bytes {
    let mut filing = base.clone();
    edit(&mut filing);
    Bytes::from(filing.to_string())
}

fn portal_cases(base: &Value) -> Vec<PortalCase> {
    let mut cases = Vec::new();
    let mut case = |what: String, body: Bytes, status: u16, field: Option<&str>| {
        cases.push(PortalCase {
            what,
            body,
            headers: Vec::new(),
            status,
            field: field.map(str::to_owned),
        });
    };
    for (name, c) in BAD_CHARACTERS {
        case(
            format!("applicant name with {name}"),
            filing_with(base, |f| f["applicant"]["name"] = format!("张{c}伟").into()),
            422,
            Some("applicant.name"),
        );
        case(
            format!("hospital name with {name}"),
            filing_with(base, |f| {
                f["form"]["hospital_name"] = format!("中山{c}医院").into()
            }),
            422,
            Some("form.hospital_name"),
        );
    }
    let long_name = "张".repeat(65);
    let long_hospital = "院".repeat(101);
    for (what, value, field) in [
        (
            "applicant name of 65 characters",
            json!(long_name),
            "applicant.name",
        ),
        ("empty applicant name", json!(""), "applicant.name"),
        ("blank applicant name", json!("   "), "applicant.name"),
    ] {
        case(
            what.into(),
            filing_with(base, |f| f["applicant"]["name"] = value),
            422,
            Some(field),
        );
    }
    case(
        "hospital name of 101 characters".into(),
        filing_with(base, |f| f["form"]["hospital_name"] = json!(long_hospital)),
        422,
        Some("form.hospital_name"),
    );
    for (what, id) in [
        ("empty ID number", ""),
        ("ID number of 17 characters", "11010519491231002"),
        ("ID number of 19 characters", "1101051949123100211"),
        ("ID number with a bad check character", "110105194912310020"),
        ("ID number with letters", "11010519491231ABCX"),
        ("ID number of an unknown region", "990105194912310021"),
        ("ID number born in the future", "110105209912310023"),
        (
            "ID number in full-width digits",
            "１１０１０５１９４９１２３１００２１",
        ),
        ("ID number with spaces", "110105 19491231 0021"),
        ("ID number with NUL", "11010519491231\u{0}021"),
        ("ID number born on 30 February", "110105199002300020"),
    ] {
        case(
            what.into(),
            filing_with(base, |f| f["applicant"]["id_number"] = id.into()),
            422,
            Some("applicant.id_number"),
        );
    }
    for (what, phone) in [
        ("phone of 10 digits", "1380013800"),
        ("phone with letters", "1380013800a"),
        ("phone with a country prefix", "+8613800138000"),
        ("phone not starting with 1", "23800138000"),
        ("phone in full-width digits", "１３８００１３８０００"),
    ] {
        case(
            what.into(),
            filing_with(base, |f| f["form"]["contact_phone"] = phone.into()),
            422,
            Some("form.contact_phone"),
        );
    }
    for (what, code) in [
        ("treatment region that does not exist", "999999"),
        ("treatment region of 5 digits", "31011"),
        ("treatment region with letters", "abcdef"),
        ("treatment region of 7 digits", "3101150"),
        ("missing treatment region", ""),
    ] {
        case(
            what.into(),
            filing_with(base, |f| f["form"]["treatment_region"] = code.into()),
            422,
            Some("form.treatment_region"),
        );
    }
    for (what, date) in [
        ("start date 30 February", "2026-02-30"),
        ("start date with slashes", "2026/12/01"),
        ("start date in words", "tomorrow"),
        ("missing start date", ""),
    ] {
        case(
            what.into(),
            filing_with(base, |f| f["form"]["start_date"] = date.into()),
            422,
            Some("form.start_date"),
        );
    }
    case(
        "reason outside its choices".into(),
        filing_with(base, |f| f["form"]["reason"] = "旅游".into()),
        422,
        Some("form.reason"),
    );
    let long_id = "x".repeat(300);
    for (what, id) in [
        ("unknown one-thing", "no-such-thing"),
        ("empty one-thing", ""),
        ("one-thing of 300 characters", long_id.as_str()),
        ("one-thing with NUL", "medical\u{0}"),
    ] {
        case(
            what.into(),
            filing_with(base, |f| f["one_thing_id"] = id.into()),
            422,
            Some("one_thing_id"),
        );
    }
    // A value pasted as a key: refused, never quoted back (checked below).
    case(
        "an ID number pasted as a form key".into(),
        filing_with(base, |f| f["form"]["110105194912310021"] = "x".into()),
        422,
        Some("form.*"),
    );
    case(
        "a name pasted as a form key".into(),
        filing_with(base, |f| f["form"]["王小明"] = "x".into()),
        422,
        Some("form.*"),
    );
    case(
        "an unknown form field".into(),
        filing_with(base, |f| f["form"]["favourite_colour"] = "蓝".into()),
        422,
        Some("form.favourite_colour"),
    );
    // Bodies.
    // Just over the limit: it fits the socket buffers, so the client always reads the
    // answer. (10 MiB, below, may see the connection closed after the 413.)
    let over = format!("{{\"one_thing_id\": \"{}\"}}", "x".repeat(300 * 1024));
    case("a 300 KiB body".into(), Bytes::from(over), 413, None);
    case(
        "not JSON".into(),
        Bytes::from_static(b"{not json"),
        400,
        None,
    );
    case("an empty body".into(), Bytes::new(), 400, None);
    case(
        "a JSON array".into(),
        Bytes::from_static(b"[1, 2]"),
        422,
        None,
    );
    case(
        "a JSON string".into(),
        Bytes::from_static(b"\"filing\""),
        422,
        None,
    );
    case(
        "an unknown top-level key".into(),
        filing_with(base, |f| f["surprise"] = 1.into()),
        422,
        None,
    );
    case(
        "no applicant".into(),
        filing_with(base, |f| {
            f.as_object_mut().unwrap().remove("applicant");
        }),
        422,
        None,
    );
    case(
        "a form that is a list".into(),
        filing_with(base, |f| f["form"] = json!(["a"])),
        422,
        None,
    );
    case(
        "a form value that is a number".into(),
        filing_with(base, |f| f["form"]["hospital_name"] = 5.into()),
        422,
        None,
    );
    case(
        "invalid UTF-8".into(),
        Bytes::from_static(b"{\"one_thing_id\": \"\xff\xfe\"}"),
        400,
        None,
    );
    let mut with_header =
        |what: &str, header: &'static str, value: String, status: u16, field: Option<&str>| {
            cases.push(PortalCase {
                what: what.into(),
                body: Bytes::from(base.to_string()),
                headers: vec![(header, value)],
                status,
                field: field.map(str::to_owned),
            });
        };
    with_header(
        "a text/plain body",
        "content-type",
        "text/plain".into(),
        415,
        None,
    );
    with_header(
        "an Idempotency-Key of 129 characters",
        "idempotency-key",
        "k".repeat(129),
        400,
        Some("Idempotency-Key"),
    );
    with_header(
        "an empty Idempotency-Key",
        "idempotency-key",
        String::new(),
        400,
        Some("Idempotency-Key"),
    );
    cases
}

fn region(prefix: &str) -> PeerIdentity {
    PeerIdentity::from_uri(&format!("spiffe://tongban/region/{prefix}")).unwrap()
}

fn with_meta<T>(message: T, pairs: &[(&'static str, String)]) -> Request<T> {
    let mut request = Request::new(message);
    for (k, v) in pairs {
        request
            .metadata_mut()
            .insert(*k, MetadataValue::try_from(v.as_str()).unwrap());
    }
    request
}

/// A message that is not what the method takes: field 1 (the application) holds bytes
/// that are no protobuf message.
#[derive(Clone, PartialEq, prost::Message)]
struct Garbage {
    #[prost(bytes = "vec", tag = "1")]
    field: Vec<u8>,
}

/// Calls `path` with `Garbage` and the given metadata; the status.
async fn garbage_call(
    channel: Channel,
    path: &'static str,
    meta: &[(&'static str, String)],
) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let request = with_meta(
        Garbage {
            field: vec![0xff, 0xff, 0xff, 0xff],
        },
        meta,
    );
    let path = http::uri::PathAndQuery::from_static(path);
    grpc.unary::<_, DeliverApplicationResponse, _>(
        request,
        path,
        StrictCodec::<Garbage, DeliverApplicationResponse>::default(),
    )
    .await
    .unwrap_err()
}

/// One gRPC row's outcome: (what, expected code, the status, field the message must name).
type GrpcRow = (String, Code, tonic::Status, Option<&'static str>);

async fn gateway_rows(t: &TestFederation, channel: Channel) -> Vec<GrpcRow> {
    let mut client = GatewayClient::new(channel.clone());
    let resident = &t.residents("44")[0];
    let mut rows: Vec<GrpcRow> = Vec::new();
    let key = |k: &str| (metadata::IDEMPOTENCY_KEY, k.to_owned());
    let target = |t: &str| (metadata::TARGET_REGION, t.to_owned());
    for (what, meta, code, field) in [
        (
            "no target region",
            vec![key("g1")],
            Code::InvalidArgument,
            Some(metadata::TARGET_REGION),
        ),
        (
            "a 2-digit target region",
            vec![key("g2"), target("44")],
            Code::InvalidArgument,
            Some(metadata::TARGET_REGION),
        ),
        (
            "a 7-digit target region",
            vec![key("g3"), target("4400000")],
            Code::InvalidArgument,
            Some(metadata::TARGET_REGION),
        ),
        (
            "a target region with letters",
            vec![key("g4"), target("abcdef")],
            Code::InvalidArgument,
            Some(metadata::TARGET_REGION),
        ),
        (
            "a target region that does not exist",
            vec![key("g5"), target("990000")],
            Code::NotFound,
            None,
        ),
        (
            "a region without a node",
            vec![key("g6"), target("110000")],
            Code::NotFound,
            None,
        ),
        (
            "no idempotency key",
            vec![target("440000")],
            Code::InvalidArgument,
            Some(metadata::IDEMPOTENCY_KEY),
        ),
        (
            "an idempotency key of 129 characters",
            vec![key(&"k".repeat(129)), target("440000")],
            Code::InvalidArgument,
            Some(metadata::IDEMPOTENCY_KEY),
        ),
        (
            "an origin claim outside the caller",
            vec![
                key("g9"),
                target("440000"),
                (metadata::ORIGIN_REGION, "440000".into()),
            ],
            Code::PermissionDenied,
            None,
        ),
        (
            "a malformed origin claim",
            vec![
                key("g10"),
                target("440000"),
                (metadata::ORIGIN_REGION, "31".into()),
            ],
            Code::InvalidArgument,
            Some(metadata::ORIGIN_REGION),
        ),
        (
            "9 KiB of metadata",
            vec![
                key("g11"),
                target("440000"),
                ("x-padding", "p".repeat(9 * 1024)),
            ],
            Code::ResourceExhausted,
            None,
        ),
        (
            "16 KiB of metadata",
            vec![
                key("g12"),
                target("440000"),
                ("x-padding", "p".repeat(16 * 1024)),
            ],
            Code::ResourceExhausted,
            None,
        ),
    ] {
        let status = client
            .deliver_application(with_meta(DeliverApplicationRequest::default(), &meta))
            .await
            .unwrap_err();
        rows.push((what.into(), code, status, field));
    }
    // A message of 5 MiB, over the gateway's limit.
    let mut form = BTreeMap::new();
    form.insert("hospital_name".to_owned(), "院".repeat(2 * 1024 * 1024));
    let big = DeliverApplicationRequest {
        application: Some(Application {
            form,
            ..Application::default()
        }),
    };
    let status = client
        .deliver_application(with_meta(big, &[key("g13"), target("440000")]))
        .await
        .unwrap_err();
    rows.push((
        "a message of 6 MiB".into(),
        Code::ResourceExhausted,
        status,
        None,
    ));
    // Lookups the gateway decodes itself.
    let purpose = || {
        Some(LookupPurpose {
            one_thing_id: "medical-treatment-registration".into(),
            case_number: "310000-20261202-00000001".into(),
        })
    };
    for (what, id, name, code, field) in [
        (
            "identity lookup of a malformed ID number",
            "1101",
            resident.name.as_str(),
            Code::InvalidArgument,
            Some("id_number"),
        ),
        (
            "identity lookup with a bad check character",
            "110105194912310020",
            resident.name.as_str(),
            Code::InvalidArgument,
            Some("id_number"),
        ),
        (
            "identity lookup of an empty ID number",
            "",
            resident.name.as_str(),
            Code::InvalidArgument,
            Some("id_number"),
        ),
    ] {
        let status = client
            .verify_identity(VerifyIdentityRequest {
                id_number: id.into(),
                name: name.into(),
                purpose: purpose(),
            })
            .await
            .unwrap_err();
        rows.push((what.into(), code, status, field));
    }
    for (what, license, field) in [
        (
            "license lookup of a malformed license id",
            "not-a-license",
            "license_id",
        ),
        ("license lookup of an empty license id", "", "license_id"),
    ] {
        let status = client
            .lookup_license(LookupLicenseRequest {
                license_id: license.into(),
                license_type: String::new(),
                purpose: purpose(),
                material_id: "insurance-proof".into(),
                holder_id_number: resident.id.as_str().into(),
            })
            .await
            .unwrap_err();
        rows.push((what.into(), Code::InvalidArgument, status, Some(field)));
    }
    // Undecodable messages: one the gateway decodes, one it relays for the node to.
    let status = garbage_call(
        channel.clone(),
        "/tongban.federation.v1.Gateway/VerifyIdentity",
        &[],
    )
    .await;
    rows.push((
        "an undecodable identity lookup".into(),
        Code::InvalidArgument,
        status,
        None,
    ));
    let status = garbage_call(
        channel,
        "/tongban.federation.v1.Gateway/DeliverApplication",
        &[key("g20"), target("440000")],
    )
    .await;
    rows.push((
        "an undecodable delivery (decoded by the node)".into(),
        Code::InvalidArgument,
        status,
        None,
    ));
    rows
}

async fn node_rows(t: &TestFederation, channel: Channel) -> Vec<GrpcRow> {
    let mut client = GatewayClient::new(channel);
    let resident = &t.residents("44")[0];
    let catalog = t
        .fed
        .node("31")
        .unwrap()
        .portal
        .get("/v1/catalog")
        .await
        .unwrap();
    let version = catalog.body["version"].as_str().unwrap().to_owned();
    let good = Application {
        case_number: "310000-20261202-00000077".into(),
        one_thing_id: "medical-treatment-registration".into(),
        catalog_version: version,
        origin_region: "310000".into(),
        target_region: "440000".into(),
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
    };
    let mut rows: Vec<GrpcRow> = Vec::new();
    let mut n = 0;
    let mut deliver =
        |what: &str, edit: &dyn Fn(&mut Application), code: Code, field: Option<&'static str>| {
            let mut application = good.clone();
            edit(&mut application);
            n += 1;
            let request = with_meta(
                DeliverApplicationRequest {
                    application: Some(application),
                },
                &[
                    (metadata::IDEMPOTENCY_KEY, format!("node-row-{n}")),
                    (metadata::TARGET_REGION, "440000".into()),
                ],
            );
            let mut client = client.clone();
            let what = what.to_owned();
            async move {
                let status = client.deliver_application(request).await.unwrap_err();
                (what, code, status, field)
            }
        };
    let mut pending = Vec::new();
    for (name, c) in [
        ("NUL", "\u{0}"),
        ("ESC", "\u{1b}"),
        ("RLO U+202E", "\u{202E}"),
    ] {
        let bad = format!("张{c}伟");
        pending.push(deliver(
            &format!("delivered applicant name with {name}"),
            &move |a: &mut Application| a.applicant.as_mut().unwrap().name = bad.clone(),
            Code::InvalidArgument,
            Some("application.applicant.name"),
        ));
    }
    pending.push(deliver(
        "delivered hospital name with BEL",
        &|a: &mut Application| {
            a.form
                .insert("hospital_name".into(), "中山\u{7}医院".into());
        },
        Code::InvalidArgument,
        Some("application.form"),
    ));
    pending.push(deliver(
        "delivered ID number with a bad check character",
        &|a: &mut Application| {
            a.applicant.as_mut().unwrap().id_number = "110105194912310020".into()
        },
        Code::InvalidArgument,
        Some("application.applicant.id_number"),
    ));
    pending.push(deliver(
        "delivery without an applicant",
        &|a: &mut Application| a.applicant = None,
        Code::InvalidArgument,
        Some("application.applicant"),
    ));
    pending.push(deliver(
        "delivered form missing a required field",
        &|a: &mut Application| {
            a.form.remove("start_date");
        },
        Code::InvalidArgument,
        Some("application.form"),
    ));
    pending.push(deliver(
        "delivered one-thing unknown to its catalog version",
        &|a: &mut Application| a.one_thing_id = "no-such-thing".into(),
        Code::InvalidArgument,
        Some("application.one_thing_id"),
    ));
    pending.push(deliver(
        "delivered case number of another origin",
        &|a: &mut Application| a.case_number = "110000-20261202-00000001".into(),
        Code::InvalidArgument,
        Some("application.case_number"),
    ));
    pending.push(deliver(
        "delivered origin outside the calling region",
        &|a: &mut Application| a.origin_region = "110000".into(),
        Code::PermissionDenied,
        Some("origin_region"),
    ));
    pending.push(deliver(
        "delivered origin that is no region code",
        &|a: &mut Application| a.origin_region = "31".into(),
        Code::InvalidArgument,
        Some("application.origin_region"),
    ));
    pending.push(deliver(
        "delivered target another region handles",
        &|a: &mut Application| a.target_region = "110000".into(),
        Code::NotFound,
        Some("target_region"),
    ));
    pending.push(deliver(
        "delivered catalog version unknown to the node",
        &|a: &mut Application| a.catalog_version = "1999.01".into(),
        Code::Unavailable,
        None,
    ));
    for row in pending {
        rows.push(row.await);
    }
    let status = client
        .deliver_application(with_meta(
            DeliverApplicationRequest { application: None },
            &[
                (metadata::IDEMPOTENCY_KEY, "node-row-empty".into()),
                (metadata::TARGET_REGION, "440000".into()),
            ],
        ))
        .await
        .unwrap_err();
    rows.push((
        "delivery without an application".into(),
        Code::InvalidArgument,
        status,
        Some("application"),
    ));
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_its_precise_answer() {
    let t = start(&["310000", "440000"]).await;
    let n31 = t.fed.node("31").unwrap();
    let base = medical_filing(&t.residents("44")[0]);
    let mut failures = Vec::new();
    let mut count = 0;

    // The portal.
    for case in portal_cases(&base) {
        count += 1;
        let headers: Vec<(&str, &str)> =
            case.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = tokio::time::timeout(
            Duration::from_secs(20),
            n31.portal
                .send_with("POST", "/v1/applications", case.body.clone(), &headers),
        )
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{}: {e}", case.what));
        let fields: Vec<String> = r.body["error"]["fields"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(|f| f["field"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let text = r.body.to_string();
        let field_ok = case.field.as_ref().is_none_or(|f| fields.contains(f));
        // Nothing personal is echoed: no ID number, no pasted name.
        let echoed = ["110105194912310021", "王小明"]
            .iter()
            .any(|p| text.contains(p));
        if r.status != case.status || !field_ok || echoed {
            failures.push(format!(
                "portal: {}: got {} {text}, expected {} {:?}",
                case.what, r.status, case.status, case.field
            ));
        }
    }
    // 10 MiB: the portal answers 413 as soon as the limit is passed and closes the
    // connection; a client still sending may see the close instead of the answer.
    count += 1;
    let huge = format!("{{\"one_thing_id\": \"{}\"}}", "x".repeat(10 * 1024 * 1024));
    match n31
        .portal
        .send("POST", "/v1/applications", Bytes::from(huge))
        .await
    {
        Ok(r) if r.status == 413 => {}
        Err(_) => {}
        Ok(r) => failures.push(format!(
            "portal: a 10 MiB body: got {} {}",
            r.status, r.body
        )),
    }
    let portal = count;

    // The gateway and the node service, as region 31.
    let channel = t
        .gateway_channel(&t.tls_files(&region("31")))
        .await
        .unwrap();
    let gateway = gateway_rows(&t, channel.clone()).await;
    let node = node_rows(&t, channel).await;
    let (gateway_count, node_count) = (gateway.len(), node.len());
    for (what, code, status, field) in gateway.into_iter().chain(node) {
        count += 1;
        let field_ok = field.is_none_or(|f| status.message().contains(f));
        if status.code() != code || !field_ok {
            failures.push(format!(
                "grpc: {what}: got {:?} {:?}, expected {code:?} naming {field:?}",
                status.code(),
                status.message()
            ));
        }
    }
    println!(
        "{count} bad inputs: {portal} at the portal, {gateway_count} at the gateway, {node_count} at the node service; {} answered otherwise than expected",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(count >= 100, "only {count} rows");

    // Still serving: a good filing is receipted and reaches Guangdong.
    let r = n31.portal.file(&base).await.unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    // Nothing from the table reached Guangdong's platform.
    let n44 = t.fed.node("44").unwrap();
    assert!(
        n44.platform
            .payload("310000-20261202-00000077")
            .await
            .unwrap()
            .is_none()
    );
    t.shutdown().await;
}
