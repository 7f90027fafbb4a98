//! Hostile input, table-driven, against a real federation over real mTLS: well over 100
//! distinct bad inputs across the portal (HTTP+JSON), the gateway (gRPC metadata and
//! messages) and the node service (deliveries the gateway passes on). Each row names
//! its expected status or code and, where there is one, the field named in the answer;
//! the federation must answer every row precisely, never echo the personal data in
//! it (the applicant's ID number, name and phone, and whatever the row pasted: an ID
//! number, a name, a phone number; in no status line, header, body, gRPC message,
//! details or metadata), and keep serving (no panic: a good filing still works at the
//! end, and it alone reaches the target's platform).

#![allow(clippy::unwrap_used)]

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};
use tongban_kit::testing::SigningChannel;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tongban_kit::testing::{TestFederation, eventually, medical_filing, start};
use tongban_proto::{
    contract::codec::StrictCodec,
    contract::metadata,
    v1::{
        Applicant, Application, DeliverApplicationRequest, DeliverApplicationResponse,
        LookupLicenseRequest, LookupPurpose, MaterialRef, MaterialSource, VerifyIdentityRequest,
        gateway_client::GatewayClient,
    },
};
use tongban_runtime::trust::identity::PeerIdentity;
use tonic::{
    Code, Request,
    metadata::{KeyAndValueRef, MetadataValue},
};

use super::faults::platform_rows;

/// The applicant's name in every row: a name no answer could hold by chance.
const APPLICANT_NAME: &str = "司徒璎珞";
/// The applicant's phone in every row (the filing's contact phone too).
const APPLICANT_PHONE: &str = "13800138000";
/// An ID number and a name pasted where they do not belong (as form keys).
const PASTED_ID: &str = "110105194912310021";
const PASTED_NAME: &str = "慕容雪鸢";

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

/// The personal data a filing body holds: the applicant's ID number, name and phone,
/// the contact phone, and form keys shaped like personal data (a run of digits, or
/// characters beyond ASCII: an ID number or a name pasted as a key).
fn personal_data(body: &[u8]) -> Vec<String> {
    let Ok(filing) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let mut found: Vec<String> = [
        &filing["applicant"]["id_number"],
        &filing["applicant"]["name"],
        &filing["applicant"]["phone"],
        &filing["form"]["contact_phone"],
    ]
    .into_iter()
    .filter_map(|v| v.as_str().map(str::to_owned))
    .collect();
    if let Some(form) = filing["form"].as_object() {
        found.extend(
            form.keys()
                .filter(|k| !k.is_ascii() || k.chars().filter(char::is_ascii_digit).count() > 3)
                .cloned(),
        );
    }
    found
}

/// The forms in which `value` must not come back: as sent, and with what a parser
/// might drop or fold (control, format and space characters; full-width digits). Values
/// too short to be told from chance are left out.
fn forms(value: &str) -> Vec<String> {
    let folded: String = value
        .chars()
        .filter(|c| !c.is_control() && !c.is_whitespace() && !matches!(c, '\u{200B}'..='\u{206F}'))
        .map(|c| match c {
            '０'..='９' => char::from(b'0' + (c as u32 - '０' as u32) as u8),
            c => c,
        })
        .collect();
    let mut out = vec![value.to_owned()];
    if folded != value {
        out.push(folded);
    }
    out.retain(|v| v.chars().count() >= 4);
    out
}

/// The personal data no answer may hold, for a row that pasted `pasted`: the
/// applicant's ID number, name and phone, the values pasted as keys, and the row's own.
fn never_echoed(applicant_id: &str, pasted: &[String]) -> Vec<String> {
    [
        applicant_id,
        APPLICANT_NAME,
        APPLICANT_PHONE,
        PASTED_ID,
        PASTED_NAME,
    ]
    .into_iter()
    .map(str::to_owned)
    .chain(pasted.iter().flat_map(|p| forms(p)))
    .collect::<std::collections::BTreeSet<String>>()
    .into_iter()
    .collect()
}

/// The values of `found` that `answer` holds.
fn echoed(answer: &str, found: &[String]) -> Vec<String> {
    found
        .iter()
        .filter(|v| answer.contains(v.as_str()))
        .cloned()
        .collect()
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
        // The applicant's own name with the character inside.
        case(
            format!("applicant name with {name}"),
            filing_with(base, |f| {
                f["applicant"]["name"] = format!("司徒{c}璎珞").into()
            }),
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
    let long_name = APPLICANT_NAME.repeat(17);
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
        ("an ID number pasted as the one-thing", PASTED_ID),
    ] {
        case(
            what.into(),
            filing_with(base, |f| f["one_thing_id"] = id.into()),
            422,
            Some("one_thing_id"),
        );
    }
    case(
        "an ID number pasted as a material".into(),
        filing_with(base, |f| {
            f["materials"] =
                json!([{"material_id": PASTED_ID, "source": "upload", "reference": "scan-1"}]);
        }),
        422,
        Some("materials[0].material_id"),
    );
    // A value pasted as a key: refused, never quoted back (checked below).
    case(
        "an ID number pasted as a form key".into(),
        filing_with(base, |f| f["form"][PASTED_ID] = "x".into()),
        422,
        Some("form.*"),
    );
    case(
        "a name pasted as a form key".into(),
        filing_with(base, |f| f["form"][PASTED_NAME] = "x".into()),
        422,
        Some("form.*"),
    );
    // The fuzzer's finding: an ID number inside a key shaped like a field name.
    case(
        "an ID number inside a form key".into(),
        filing_with(base, |f| {
            f["form"]["hospita110105198001019010"] = "x".into()
        }),
        422,
        Some("form.*"),
    );
    case(
        "an unknown form field".into(),
        filing_with(base, |f| f["form"]["favourite_colour"] = "蓝".into()),
        422,
        Some("form.favourite_colour"),
    );
    // Fan-out: one license cited over and over would be as many lookups at the gateway
    // and access-log writes at the issuer; refused on the count before any is read.
    let cited = json!({"material_id": "id_card", "source": "license", "reference": "440000-RCN-1"});
    case(
        "one material cited 1,000 times".into(),
        filing_with(base, |f| f["materials"] = json!(vec![cited; 1000])),
        422,
        Some("materials"),
    );
    case(
        "a material given again with another reference".into(),
        filing_with(base, |f| {
            f["materials"] = json!([
                {"material_id": "referral_certificate", "source": "upload", "reference": "f00d"},
                {"material_id": "referral_certificate", "source": "upload", "reference": "beef"},
            ])
        }),
        422,
        Some("materials[1].reference"),
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
    channel: SigningChannel,
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

/// One gRPC row's outcome: (what, expected code, the status, field the message must name,
/// personal data the row pasted beyond the applicant's own).
type GrpcRow = (
    String,
    Code,
    tonic::Status,
    Option<&'static str>,
    Vec<String>,
);

/// A delivery 44 would take, from 31, of resident 0 of 44 under [`APPLICANT_NAME`].
async fn good_application(t: &TestFederation) -> Application {
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
    Application {
        case_number: "310000-20261202-00000077".into(),
        one_thing_id: "medical-treatment-registration".into(),
        catalog_version: version,
        origin_region: "310000".into(),
        target_region: "440000".into(),
        applicant: Some(Applicant {
            id_number: resident.id.as_str().into(),
            name: APPLICANT_NAME.into(),
            phone: APPLICANT_PHONE.into(),
        }),
        form: [
            ("treatment_region", "310115"),
            ("start_date", "2026-12-01"),
            ("reason", "异地长期居住"),
            ("contact_phone", APPLICANT_PHONE),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        ..Application::default()
    }
}

/// Calls the gateway refuses itself. The deliveries carry `good` (the applicant's ID
/// number and name), which no refusal may quote.
async fn gateway_rows(
    t: &TestFederation,
    channel: SigningChannel,
    good: &Application,
) -> Vec<GrpcRow> {
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
        let request = DeliverApplicationRequest {
            application: Some(good.clone()),
        };
        let status = client
            .deliver_application(with_meta(request, &meta))
            .await
            .unwrap_err();
        rows.push((what.into(), code, status, field, Vec::new()));
    }
    // A message of 6 MiB, over the gateway's limit.
    let mut big = good.clone();
    big.form
        .insert("hospital_name".to_owned(), "院".repeat(2 * 1024 * 1024));
    let big = DeliverApplicationRequest {
        application: Some(big),
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
        Vec::new(),
    ));
    // Lookups the gateway decodes itself.
    let purpose = || {
        Some(LookupPurpose {
            applicant_request: Some(tongban_proto::rules::consent::request(
                "portal",
                1_780_000_000_000,
            )),
            one_thing_id: "medical-treatment-registration".into(),
            case_number: "310000-20261202-00000001".into(),
        })
    };
    for (what, id, name, code, field) in [
        (
            "identity lookup of a malformed ID number",
            "1101051949",
            APPLICANT_NAME,
            Code::InvalidArgument,
            Some("id_number"),
        ),
        (
            "identity lookup with a bad check character",
            "110105194912310020",
            APPLICANT_NAME,
            Code::InvalidArgument,
            Some("id_number"),
        ),
        (
            "identity lookup of an empty ID number",
            "",
            APPLICANT_NAME,
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
        rows.push((what.into(), code, status, field, vec![id.to_owned()]));
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
        rows.push((
            what.into(),
            Code::InvalidArgument,
            status,
            Some(field),
            Vec::new(),
        ));
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
        Vec::new(),
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
        Vec::new(),
    ));
    rows
}

/// Deliveries the node refuses (the gateway relays them): `good` with one thing wrong.
async fn node_rows(channel: SigningChannel, good: &Application) -> Vec<GrpcRow> {
    let mut client = GatewayClient::new(channel);
    let mut rows: Vec<GrpcRow> = Vec::new();
    let mut n = 0;
    let mut deliver = |what: &str,
                       edit: &dyn Fn(&mut Application),
                       code: Code,
                       field: Option<&'static str>,
                       pasted: &[&str]| {
        let pasted: Vec<String> = pasted.iter().map(|p| (*p).to_owned()).collect();
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
            (what, code, status, field, pasted)
        }
    };
    let mut pending = Vec::new();
    for (name, c) in [
        ("NUL", "\u{0}"),
        ("ESC", "\u{1b}"),
        ("RLO U+202E", "\u{202E}"),
    ] {
        // The applicant's own name with the character inside.
        let bad = format!("司徒{c}璎珞");
        let edit = {
            let bad = bad.clone();
            move |a: &mut Application| a.applicant.as_mut().unwrap().name = bad.clone()
        };
        pending.push(deliver(
            &format!("delivered applicant name with {name}"),
            &edit,
            Code::InvalidArgument,
            Some("application.applicant.name"),
            &[&bad],
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
        &[],
    ));
    pending.push(deliver(
        "delivered ID number with a bad check character",
        &|a: &mut Application| {
            a.applicant.as_mut().unwrap().id_number = "110105194912310020".into()
        },
        Code::InvalidArgument,
        Some("application.applicant.id_number"),
        &["110105194912310020"],
    ));
    pending.push(deliver(
        "delivery without an applicant",
        &|a: &mut Application| a.applicant = None,
        Code::InvalidArgument,
        Some("application.applicant"),
        &[],
    ));
    pending.push(deliver(
        "delivered form missing a required field",
        &|a: &mut Application| {
            a.form.remove("start_date");
        },
        Code::InvalidArgument,
        Some("application.form"),
        &[],
    ));
    pending.push(deliver(
        "delivered one-thing unknown to its catalog version",
        &|a: &mut Application| a.one_thing_id = "no-such-thing".into(),
        Code::InvalidArgument,
        Some("application.one_thing_id"),
        &[],
    ));
    pending.push(deliver(
        "delivered case number of another origin",
        &|a: &mut Application| a.case_number = "110000-20261202-00000001".into(),
        Code::InvalidArgument,
        Some("application.case_number"),
        &[],
    ));
    pending.push(deliver(
        "delivered origin outside the calling region",
        &|a: &mut Application| a.origin_region = "110000".into(),
        Code::PermissionDenied,
        Some("origin_region"),
        &[],
    ));
    pending.push(deliver(
        "delivered origin that is no region code",
        &|a: &mut Application| a.origin_region = "31".into(),
        Code::InvalidArgument,
        Some("application.origin_region"),
        &[],
    ));
    pending.push(deliver(
        "delivered target another region handles",
        &|a: &mut Application| a.target_region = "110000".into(),
        Code::NotFound,
        Some("target_region"),
        &[],
    ));
    pending.push(deliver(
        "delivered with one material 10,000 times",
        &|a: &mut Application| {
            a.materials = vec![
                MaterialRef {
                    material_id: "referral_certificate".into(),
                    source: MaterialSource::Upload as i32,
                    reference: "f00d".into(),
                };
                10_000
            ]
        },
        Code::InvalidArgument,
        Some("application.materials"),
        &[],
    ));
    pending.push(deliver(
        "delivered catalog version unknown to the node",
        &|a: &mut Application| a.catalog_version = "1999.01".into(),
        Code::Unavailable,
        None,
        &[],
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
        Vec::new(),
    ));
    rows
}

/// What the portal answered, as it came over the wire.
struct RawAnswer {
    status: u16,
    /// The status line and the headers.
    head: String,
    body: Vec<u8>,
}

impl RawAnswer {
    /// The body as JSON (a body that is not JSON as a string), like `PortalClient`.
    fn json(&self) -> Value {
        if self.body.is_empty() {
            return Value::Null;
        }
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&self.body).into_owned()))
    }

    /// Everything the caller reads: the head, the body as sent, and every string of a
    /// JSON body decoded (so an escaped character hides nothing).
    fn text(&self) -> String {
        fn strings(v: &Value, out: &mut String) {
            match v {
                Value::String(s) => {
                    out.push_str(s);
                    out.push('\n');
                }
                Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
                Value::Object(map) => map.iter().for_each(|(k, v)| {
                    out.push_str(k);
                    out.push('\n');
                    strings(v, out);
                }),
                _ => {}
            }
        }
        let mut text = format!("{}\n{}\n", self.head, String::from_utf8_lossy(&self.body));
        strings(&self.json(), &mut text);
        text
    }
}

/// `POST /v1/applications` over a plain HTTP/1.1 connection, to read the answer's
/// headers too; a JSON content type unless `headers` give one.
async fn post_raw(
    addr: SocketAddr,
    body: &Bytes,
    headers: &[(&str, &str)],
) -> Result<RawAnswer, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut head = format!(
        "POST /v1/applications HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        head.push_str("content-type: application/json\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let request = [head.as_bytes(), body].concat();
    let (mut read, mut write) = stream.into_split();
    // Written while the answer is read (the portal may answer before the body ends);
    // the write half is kept open until then, as a half-closed request may be dropped.
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&request).await;
        write
    });
    let mut received = Vec::new();
    let mut chunk = vec![0; 64 * 1024];
    loop {
        match read.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            // A reset after the answer (the portal closed on a body it would not read).
            Err(_) if !received.is_empty() => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    writer.abort();
    let split = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no complete head in {} bytes", received.len()))?;
    let head = String::from_utf8_lossy(&received[..split]).into_owned();
    let mut body = received[split + 4..].to_vec();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_ascii_lowercase())
        })
    };
    if header("transfer-encoding").as_deref() == Some("chunked") {
        body = dechunk(&body).ok_or("a cut chunked body")?;
    } else if let Some(length) = header("content-length") {
        let length: usize = length.parse().map_err(|_| "a bad content-length")?;
        if body.len() < length {
            return Err(format!("{} of {length} body bytes", body.len()));
        }
        body.truncate(length);
    }
    Ok(RawAnswer { status, head, body })
}

/// A chunked body's content, `None` if it is cut short.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&rest[..line]).ok()?.split(';').next()?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        rest = &rest[line + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// Everything a gRPC caller reads of a refusal: the message, the details and every
/// metadata key and value (headers and trailers).
fn status_text(status: &tonic::Status) -> String {
    let mut text = format!(
        "{}\n{}\n",
        status.message(),
        String::from_utf8_lossy(status.details())
    );
    for entry in status.metadata().iter() {
        match entry {
            KeyAndValueRef::Ascii(k, v) => {
                text.push_str(&format!(
                    "{}: {}\n",
                    k.as_str(),
                    String::from_utf8_lossy(v.as_encoded_bytes())
                ));
                if let Ok(v) = v.to_str() {
                    text.push_str(&format!("{}\n", percent_decoded(v)));
                }
            }
            KeyAndValueRef::Binary(k, v) => {
                text.push_str(&format!("{}: ", k.as_str()));
                if let Ok(bytes) = v.to_bytes() {
                    text.push_str(&String::from_utf8_lossy(&bytes));
                }
                text.push('\n');
            }
        }
    }
    text
}

/// `value` with its `%XX` escapes decoded (as `grpc-message` carries text).
fn percent_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_its_precise_answer() {
    let t = start(&["310000", "440000"]).await;
    let n31 = t.fed.node("31").unwrap();
    let resident = t.residents("44")[0].clone();
    let applicant_id = resident.id.as_str().to_owned();
    // The rows' applicant: resident 0 of 44 under a name no answer holds by chance.
    let mut base = medical_filing(&resident);
    base["applicant"]["name"] = APPLICANT_NAME.into();
    assert_eq!(base["applicant"]["phone"], APPLICANT_PHONE);
    let mut failures = Vec::new();
    let mut count = 0;

    // The portal.
    for case in portal_cases(&base) {
        count += 1;
        let headers: Vec<(&str, &str)> =
            case.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = tokio::time::timeout(
            Duration::from_secs(20),
            post_raw(n31.portal_addr, &case.body, &headers),
        )
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{}: {e}", case.what));
        let body = r.json();
        let fields: Vec<String> = body["error"]["fields"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(|f| f["field"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let field_ok = case.field.as_ref().is_none_or(|f| fields.contains(f));
        // Nothing personal is echoed: not the applicant's ID number, name or phone, nor
        // anything the row pasted, in the head or the body.
        let echoed = echoed(
            &r.text(),
            &never_echoed(&applicant_id, &personal_data(&case.body)),
        );
        if r.status != case.status || !field_ok || !echoed.is_empty() {
            failures.push(format!(
                "portal: {}: got {} {body}, expected {} {:?}; echoed {echoed:?} in\n{}",
                case.what, r.status, case.status, case.field, r.head
            ));
        }
    }
    // 10 MiB: the portal answers 413 as soon as the limit is passed and closes the
    // connection; a client still sending may see the close instead of the answer.
    count += 1;
    let huge = Bytes::from(format!(
        "{{\"one_thing_id\": \"{}\"}}",
        "x".repeat(10 * 1024 * 1024)
    ));
    match post_raw(n31.portal_addr, &huge, &[]).await {
        Ok(r) if r.status == 413 => {}
        Err(_) => {}
        Ok(r) => failures.push(format!(
            "portal: a 10 MiB body: got {} {}",
            r.status,
            r.json()
        )),
    }
    let portal = count;

    // The gateway and the node service, as region 31.
    let channel = t
        .gateway_channel(&t.tls_files(&region("31")))
        .await
        .unwrap();
    let good = good_application(&t).await;
    let gateway = gateway_rows(&t, channel.clone(), &good).await;
    let node = node_rows(channel, &good).await;
    let (gateway_count, node_count) = (gateway.len(), node.len());
    for (what, code, status, field, pasted) in gateway.into_iter().chain(node) {
        count += 1;
        let field_ok = field.is_none_or(|f| status.message().contains(f));
        let echoed = echoed(&status_text(&status), &never_echoed(&applicant_id, &pasted));
        if status.code() != code || !field_ok || !echoed.is_empty() {
            failures.push(format!(
                "grpc: {what}: got {:?} {:?}, expected {code:?} naming {field:?}; echoed {echoed:?} in {:?}",
                status.code(),
                status.message(),
                status.metadata()
            ));
        }
    }
    println!(
        "{count} bad inputs: {portal} at the portal, {gateway_count} at the gateway, {node_count} at the node service; {} answered otherwise than expected",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(count >= 100, "only {count} rows");

    // Still serving: a good filing (the resident's own name, as their home region
    // verifies it) is receipted and reaches Guangdong.
    let r = n31.portal.file(&medical_filing(&resident)).await.unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let case = r.body["case_number"].as_str().unwrap().to_owned();
    // It alone reached Guangdong's platform, once: nothing from the table did.
    let rows = eventually(
        Duration::from_secs(20),
        "the good filing delivered",
        || async {
            let rows = platform_rows(&t, "44").await;
            rows.contains_key(&case).then_some(rows)
        },
    )
    .await;
    assert_eq!(rows, BTreeMap::from([(case, 1)]), "44's platform");
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
