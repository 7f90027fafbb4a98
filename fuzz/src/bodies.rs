//! The bodies of the fuzz targets, one function per target. Each feeds arbitrary bytes
//! to code that meets untrusted input and checks the promises its callers rely on; a
//! panic (an assertion here, or an overflow, slice or `unreachable!` in the code under
//! test) is a finding.
//!
//! They are plain functions, apart from the `fuzz_target!` wrappers, so that the stable
//! test suite replays the committed seeds through the same code
//! (`tests/tests/integration/fuzz_seeds.rs` includes this file by path).

use std::{
    collections::BTreeMap,
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use prost::Message as _;
use time::{Date, macros::date};
use tongban_gateway::{
    authorize,
    call::{Body, Call},
    deadline::{Deadlines, parse_grpc_timeout},
    message::Message,
    recognition::{check_assertion, check_license},
    registry::IssuerKey,
    unary,
};
use tongban_node::filing::FilingRequest;
use tongban_proto::{
    contract::metadata,
    rules::catalog::Catalog,
    rules::credentials::{SignedKind, SigningKey, license_issuer, verify},
    rules::region::{RegionCode, RegionPrefix, RegionTable},
    rules::resident_id::ResidentId,
    rules::text,
    v1::{
        IdentityAssertion, License, ListLicensesRequest, LookupLicenseRequest,
        PublishRevocationRequest, SignedObject, VerifyIdentityRequest,
    },
};
use tongban_runtime::{
    observability::trace_context::TraceParent, serving::incoming::PeerInfo,
    trust::identity::PeerIdentity,
};

/// A fixed "today", so a finding reproduces on any day.
const TODAY: Date = date!(2026 - 12 - 01);

fn table() -> &'static RegionTable {
    RegionTable::embedded()
}

/// Resident ID numbers, region codes and prefixes as callers type them.
pub fn resident_id(data: &[u8]) {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = ResidentId::parse(input, table(), TODAY) {
        let number = id.as_str();
        assert_eq!(number.len(), 18, "a parsed number is 18 characters");
        let again = ResidentId::parse(number, table(), TODAY);
        assert_eq!(
            again.as_ref().map(|a| a.as_str()),
            Ok(number),
            "normal form parses"
        );
        assert!(id.birth_date() <= TODAY, "birth date not after today");
        assert!(table().is_known(&id.province()), "province is known");
        let masked = id.masked();
        assert_eq!(masked.len(), 18);
        assert!(!masked.contains(&number[6..14]) || number[6..14] == masked[6..14]);
        assert_eq!(&masked[6..14], "********", "the birth date is masked");
        let _ = id.home_region();
        let _ = id.is_male();
    }
    if let Ok(code) = RegionCode::parse(input) {
        assert_eq!(
            RegionCode::parse(code.as_str()),
            Ok(code),
            "code round-trips"
        );
        assert!(
            code.to_prefix().contains(&code),
            "a code is inside its prefix"
        );
        let _ = code.province();
        let _ = code.significant_prefix();
        let _ = table().get(&code);
    }
    if let Ok(prefix) = RegionPrefix::parse(input) {
        assert_eq!(RegionPrefix::parse(prefix.as_str()), Ok(prefix));
        assert!(
            prefix.contains(&RegionCode::from_prefix(&prefix)),
            "a prefix contains its own code"
        );
    }
    let _ = text::problem(input);
    let _ = license_issuer(input);
}

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(Catalog::embedded)
}

/// Whether `value` has the shape of an 18-character resident ID number.
fn id_shaped(value: &str) -> bool {
    value.len() == 18
        && value
            .bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_digit() || (i == 17 && (b == b'X' || b == b'x')))
}

/// The portal's filing body: JSON as a browser or a counter system posts it, read as
/// the portal reads it and checked against the embedded catalog. No error text may
/// quote a value or key that could be an ID number.
pub fn portal_filing(data: &[u8]) {
    let Ok(request) = serde_json::from_slice::<FilingRequest>(data) else {
        return;
    };
    let _ = ResidentId::parse(&request.applicant.id_number, table(), TODAY);
    for value in [&request.applicant.name, &request.applicant.phone] {
        let _ = text::problem(value);
    }
    let Some(item) = catalog().item(&request.one_thing_id) else {
        return;
    };
    let _ = item.allows_mode(
        request
            .mode
            .unwrap_or(tongban_proto::rules::catalog::HandlingMode::FullyOnline),
    );
    let Err(errors) = item.validate_form(&request.form, table(), TODAY) else {
        return;
    };
    let secrets: Vec<&str> = request
        .form
        .iter()
        .flat_map(|(k, v)| [k.as_str(), v.as_str()])
        .filter(|s| id_shaped(s.trim()))
        .collect();
    for error in &errors.0 {
        for secret in &secrets {
            assert!(
                !error.field.contains(secret.trim()) && !error.problem.contains(secret.trim()),
                "form error echoes an ID-shaped key or value: {error:?}"
            );
        }
    }
    let unknown: BTreeMap<_, _> = request
        .form
        .keys()
        .filter(|k| item.form_field(k).is_none() && !text::quotable_key(k))
        .map(|k| (k.as_str(), ()))
        .collect();
    for error in &errors.0 {
        assert!(
            !unknown.contains_key(error.field.as_str()),
            "an unquotable key is named: {error:?}"
        );
    }
}

/// A call as the gateway receives it, from bytes laid out as
/// `path \n (name: value \n)* \n body`: the method table, the metadata the pipeline
/// reads (size, regions, idempotency key, deadline, trace context) and, for the lookups
/// the gateway decodes, the framed message and the fields it validates first. Every
/// refusal must be a precise code, never INTERNAL or UNKNOWN.
pub fn gateway_call(data: &[u8]) {
    let mut lines = data.splitn(2, |b| *b == b'\n');
    let Some(path) = lines.next() else { return };
    let mut rest = lines.next().unwrap_or_default();
    let Ok(mut request) = http::Request::post(path).body(()) else {
        return;
    };
    while let Some(end) = rest.iter().position(|b| *b == b'\n') {
        let line = &rest[..end];
        rest = &rest[end + 1..];
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name),
            http::HeaderValue::from_bytes(value.trim_ascii()),
        ) {
            request.headers_mut().append(name, value);
        }
    }
    let (parts, ()) = request.into_parts();
    let peer = Arc::new(PeerInfo {
        remote_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
        identity: PeerIdentity::Region(
            RegionPrefix::parse("44").unwrap_or_else(|_| unreachable!()),
        ),
    });
    let body = Message::from(Bytes::copy_from_slice(rest));
    let call = Call::from_request(parts, Body::Whole(body), peer);
    let precise = |e: &tongban_gateway::error::GatewayError| {
        let code = e.code();
        assert!(
            code != tonic::Code::Internal && code != tonic::Code::Unknown,
            "{e} answered {code:?}"
        );
    };
    let name = call.method_name();
    assert!(
        name.len() <= 256 && name.chars().all(|c| !c.is_control()),
        "{name:?}"
    );
    if let Err(e) = authorize::check_metadata_size(&call) {
        precise(&e);
    }
    for (name, key) in [
        (metadata::names::TARGET_REGION, metadata::TARGET_REGION),
        (metadata::names::ORIGIN_REGION, metadata::ORIGIN_REGION),
    ] {
        if let Err(e) = metadata::region_code(&call.headers, &name, key) {
            precise(&e.into());
        }
    }
    match metadata::idempotency_key(&call.headers) {
        Ok(Some(k)) => assert!(!k.is_empty() && k.len() <= metadata::MAX_IDEMPOTENCY_KEY),
        Ok(None) => {}
        Err(e) => precise(&e.into()),
    }
    if let Some(value) = call.headers.get("grpc-timeout") {
        let _ = parse_grpc_timeout(value);
    }
    if let Some(value) = call
        .headers
        .get(metadata::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
    {
        let _ = TraceParent::parse(value);
    }
    let Ok(method) = call.known_method() else {
        return;
    };
    let deadline = Deadlines::new(Duration::from_secs(30)).for_call(method, &call.headers);
    assert!(deadline.wait <= Duration::from_secs(30));
    if let Err(e) = authorize::check_key(&call, method) {
        precise(&e);
    }
    let Body::Whole(message) = &call.body else {
        return;
    };
    let decoded = match method.name {
        "VerifyIdentity" => unary::decode::<VerifyIdentityRequest>(message).map(|r| {
            let _ = ResidentId::parse(&r.id_number, table(), TODAY);
            let _ = text::problem(&r.name);
        }),
        "LookupLicense" => unary::decode::<LookupLicenseRequest>(message).map(|r| {
            let _ = license_issuer(&r.license_id);
        }),
        "ListLicenses" => unary::decode::<ListLicensesRequest>(message).map(|r| {
            let _ = ResidentId::parse(&r.holder_id_number, table(), TODAY);
        }),
        "PublishRevocation" => unary::decode::<PublishRevocationRequest>(message).map(|_| ()),
        _ => Ok(()),
    };
    if let Err(e) = decoded {
        precise(&e);
    }
}

struct Issuer {
    key: SigningKey,
    registered: Vec<IssuerKey>,
}

fn issuer() -> &'static Issuer {
    static ISSUER: OnceLock<Issuer> = OnceLock::new();
    ISSUER.get_or_init(|| {
        let der = SigningKey::generate_pkcs8().unwrap_or_else(|e| panic!("{e}"));
        let key = SigningKey::from_pkcs8("fuzz-1", &der).unwrap_or_else(|e| panic!("{e}"));
        let registered = vec![IssuerKey {
            id: "fuzz-1".to_owned(),
            public_key: key.public_key(),
            not_before: SystemTime::UNIX_EPOCH,
            not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000),
        }];
        Issuer { key, registered }
    })
}

/// License and identity-assertion encodings and their signatures. The first byte picks
/// the case: an object as a hostile issuer would send it (any bytes as a
/// `SignedObject`), or arbitrary bytes as a body signed with the registered key, so the
/// checks behind the signature are reached too. A verified object must be exactly what
/// was asked; a signature must hold over its exact bytes and kind only.
pub fn license(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let issuer = issuer();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
    let signed = if mode % 2 == 0 {
        match SignedObject::decode(body) {
            Ok(s) => s,
            Err(_) => return,
        }
    } else {
        let kind = if mode % 4 == 1 {
            SignedKind::License
        } else {
            SignedKind::IdentityAssertion
        };
        let signed = issuer.key.sign(kind, body.to_vec());
        let public = issuer.key.public_key();
        assert!(verify(&public, kind, body, &signed.signature));
        let other = match kind {
            SignedKind::License => SignedKind::IdentityAssertion,
            SignedKind::IdentityAssertion => SignedKind::License,
        };
        assert!(
            !verify(&public, other, body, &signed.signature),
            "kind is signed"
        );
        if let Some((first, tail)) = body.split_first() {
            let mut changed = vec![first ^ 1];
            changed.extend_from_slice(tail);
            assert!(
                !verify(&public, kind, &changed, &signed.signature),
                "body is signed"
            );
        }
        signed
    };
    if let Ok(license) = License::decode(signed.body.as_ref()) {
        let route = RegionCode::parse(&license.issuing_region)
            .map(|r| r.province().to_prefix())
            .unwrap_or_else(|_| RegionPrefix::parse("44").unwrap_or_else(|_| unreachable!()));
        if let Ok((verified, checked)) = check_license(
            &signed,
            &issuer.registered,
            &route,
            &license.license_id,
            None,
            TODAY,
            now,
        ) {
            assert_eq!(verified.license_id, license.license_id);
            assert!(route.contains(&checked.issuing_region));
            assert_eq!(
                license_issuer(&verified.license_id).ok(),
                Some(checked.issuing_region)
            );
        }
    }
    if let Ok(assertion) = IdentityAssertion::decode(signed.body.as_ref()) {
        let route = RegionCode::parse(&assertion.issuing_region)
            .map(|r| r.province().to_prefix())
            .unwrap_or_else(|_| RegionPrefix::parse("44").unwrap_or_else(|_| unreachable!()));
        if let Ok(checked) = check_assertion(
            &signed,
            &issuer.registered,
            &route,
            "110105199003070015",
            now,
        ) {
            assert!(checked.good_until > now);
        }
    }
}

/// License ids as callers send them: the national format (GB/T 36904), the legacy short
/// form, anything else. A parsed national id is its segments joined again, its issuer's
/// region a valid code, and routing (`license_issuer`) agrees with the parser; a refusal
/// names a segment.
pub fn license_id(data: &[u8]) {
    use tongban_proto::rules::{credentials::license_issuer, license_id};
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    match license_id::parse(input) {
        Ok(id) => {
            let joined = format!(
                "{}{}.{}.{}.{}.",
                license_id::PREFIX,
                id.type_code,
                id.issuer_code,
                id.serial,
                id.version
            );
            assert!(input.starts_with(&joined), "segments rejoin the input");
            assert_eq!(input.len(), joined.len() + 1, "one check character");
            assert_eq!(
                license_issuer(input).map(|r| r.as_str().to_owned()),
                Ok(id.issuer_region.as_str().to_owned()),
                "routing agrees with the parser"
            );
        }
        Err(refusal) => {
            assert!(
                ["prefix", "type", "issuer", "serial", "version", "check"]
                    .contains(&refusal.segment),
                "a refusal names a segment"
            );
            if license_id::is_national(input) {
                assert!(
                    license_issuer(input).is_err(),
                    "a malformed national id is not routed"
                );
            }
        }
    }
}
