//! The contract's OpenAPI 3.1 document, derived from the types in [`super::wire`] and
//! the operations declared here, and published at `proto/platform/v1/openapi.json`. A
//! test fails when the published file and this derivation differ; run it with
//! `TONGBAN_WRITE_OPENAPI=1` to write the file anew after a deliberate change.
//!
//! The functions below are declarations only: utoipa reads their attributes. The
//! reference platform (`super::reference`) serves these operations.

#![allow(dead_code)]

use utoipa::{
    Modify, OpenApi,
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use super::wire::{
    Applicant, CaseEvent, CaseEventPage, CaseTakeover, CaseView, Health, HolderLookup, License,
    LicenseList, Material, Person, PersonLookup, Problem, Revocation, RevocationPage,
};

/// Where the published document lives, from the workspace root.
pub const PUBLISHED_PATH: &str = "proto/platform/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tongban platform contract",
        version = "1.0.0",
        description = "What a province's government-service platform serves so that a Tongban \
node can stand in front of it. Cases delivered from other regions are taken over \
idempotently by federation case number; every status change is published in an ordered, \
paged, resumable feed, in the platform's own status codes, which the node maps onto the \
canonical states received, accepted, more_materials_needed, approved, rejected, withdrawn, \
terminated. The register answers for persons and the electronic licenses the region issued, \
and publishes revocations in a feed. Every call carries Idempotency-Key and W3C trace \
context; case calls carry Tongban-Case-Number; register calls carry the purpose of use \
(Tongban-Purpose-One-Thing, Tongban-Purpose-Case). Errors are RFC 9457 problems. Personal \
data travels only in bodies, only over TLS.",
        license(name = "Apache-2.0")
    ),
    paths(
        take_over, read_case, case_events, lookup_person, read_license, licenses_of_holder,
        revocations, health
    ),
    components(schemas(
        CaseTakeover, Applicant, Material, CaseView, CaseEvent, CaseEventPage, PersonLookup,
        Person, HolderLookup, License, LicenseList, Revocation, RevocationPage, Health, Problem
    )),
    modifiers(&Security),
    security(("mutual_tls" = []), ("bearer" = []), ("hmac_signature" = [])),
    tags(
        (name = "cases", description = "Cases handed over by the node, and their status changes."),
        (name = "register", description = "Persons and the licenses this region issued."),
        (name = "health", description = "Whether the platform takes cases.")
    )
)]
struct PlatformContract;

/// The three ways a province authenticates the node.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "mutual_tls",
            SecurityScheme::MutualTls {
                description: Some(
                    "The node presents a client certificate signed by a CA the platform trusts."
                        .into(),
                ),
                extensions: None,
            },
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A token the province issued to its node."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "hmac_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Tongban-Signature",
                "Lower-case hex HMAC-SHA256, keyed by the app's secret, of the lines: method, \
                 path with query, X-Tongban-Timestamp (Unix seconds, within 300 s of the \
                 server's clock), X-Tongban-Nonce (not reused within that window), the \
                 SHA-256 of the body (hex), X-Tongban-App-Key.",
            ))),
        );
    }
}

/// Takes over a case delivered to this region.
///
/// Idempotent by case number: the same case again answers `200` with the case as it
/// now stands and creates nothing; a different payload under the same number answers
/// `409`.
#[utoipa::path(
    put, path = "/v1/cases/{case_number}", tag = "cases",
    params(
        ("case_number" = String, Path, description = "The federation case number."),
        ("Idempotency-Key" = String, Header, description = "The case number."),
        ("Tongban-Case-Number" = String, Header, description = "The case number."),
        ("traceparent" = Option<String>, Header, description = "W3C trace context.")
    ),
    request_body = CaseTakeover,
    responses(
        (status = 201, description = "Taken over now.", body = CaseView),
        (status = 200, description = "Taken over before; nothing new was created.", body = CaseView),
        (status = 400, description = "A field is missing or invalid (named in `detail`).", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The case number is taken by a different payload.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Cannot take cases now; retry.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over 1 MiB.", body = Problem, content_type = "application/problem+json")
    )
)]
fn take_over() {}

/// A case by federation case number.
#[utoipa::path(
    get, path = "/v1/cases/{case_number}", tag = "cases",
    params(
        ("case_number" = String, Path, description = "The federation case number."),
        ("Idempotency-Key" = String, Header, description = "One key per logical call."),
        ("Tongban-Case-Number" = String, Header, description = "The case number.")
    ),
    responses(
        (status = 200, description = "The case.", body = CaseView),
        (status = 404, description = "No such case.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Cannot answer now; retry (with `Retry-After` when given).", body = Problem, content_type = "application/problem+json")
    )
)]
fn read_case() {}

/// Status changes after a cursor, oldest first.
///
/// Every change is listed exactly once, in the order it was made; a page ends at
/// `next_cursor`, from which the next request resumes (`after=next_cursor`), also after
/// a restart of either side.
#[utoipa::path(
    get, path = "/v1/case-events", tag = "cases",
    params(
        ("after" = Option<String>, Query, description = "A cursor from an earlier page; absent for the beginning of the feed."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Events per page, 1 to 1000 (default 100)."),
        ("Idempotency-Key" = String, Header, description = "One key per logical call.")
    ),
    responses(
        (status = 200, description = "A page of events.", body = CaseEventPage),
        (status = 400, description = "An unknown cursor or a bad limit.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Cannot answer now; retry (with `Retry-After` when given).", body = Problem, content_type = "application/problem+json")
    )
)]
fn case_events() {}

/// A person of the register, by ID number (in the body, never the URL).
#[utoipa::path(
    post, path = "/v1/persons/lookup", tag = "register",
    params(
        ("Idempotency-Key" = String, Header, description = "One key per logical call."),
        ("Tongban-Purpose-One-Thing" = String, Header, description = "Purpose of use: the one-thing."),
        ("Tongban-Purpose-Case" = Option<String>, Header, description = "Purpose of use: the case number.")
    ),
    request_body = PersonLookup,
    responses(
        (status = 200, description = "The person.", body = Person),
        (status = 400, description = "A bad ID number, or no purpose stated.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not in the register.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Cannot answer now; retry (with `Retry-After` when given).", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over 1 MiB.", body = Problem, content_type = "application/problem+json")
    )
)]
fn lookup_person() {}

/// A license issued by this region.
#[utoipa::path(
    get, path = "/v1/licenses/{license_id}", tag = "register",
    params(
        ("license_id" = String, Path, description = "`<issuing region>-<serial>`."),
        ("Idempotency-Key" = String, Header, description = "One key per logical call."),
        ("Tongban-Purpose-One-Thing" = String, Header, description = "Purpose of use: the one-thing."),
        ("Tongban-Purpose-Case" = Option<String>, Header, description = "Purpose of use: the case number.")
    ),
    responses(
        (status = 200, description = "The license, revoked or not.", body = License),
        (status = 400, description = "No purpose stated.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not issued here.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Cannot answer now; retry (with `Retry-After` when given).", body = Problem, content_type = "application/problem+json")
    )
)]
fn read_license() {}

/// Every license this region issued to a holder (ID number in the body).
#[utoipa::path(
    post, path = "/v1/licenses/by-holder", tag = "register",
    params(
        ("Idempotency-Key" = String, Header, description = "One key per logical call."),
        ("Tongban-Purpose-One-Thing" = String, Header, description = "Purpose of use: the one-thing."),
        ("Tongban-Purpose-Case" = Option<String>, Header, description = "Purpose of use: the case number.")
    ),
    request_body = HolderLookup,
    responses(
        (status = 200, description = "The holder's licenses (possibly none).", body = LicenseList),
        (status = 400, description = "A bad ID number, or no purpose stated.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Cannot answer now; retry (with `Retry-After` when given).", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over 1 MiB.", body = Problem, content_type = "application/problem+json")
    )
)]
fn licenses_of_holder() {}

/// Revocations after a cursor, oldest first (ordered and paged as the case events).
#[utoipa::path(
    get, path = "/v1/revocations", tag = "register",
    params(
        ("after" = Option<String>, Query, description = "A cursor from an earlier page; absent for the beginning."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Revocations per page, 1 to 1000 (default 100)."),
        ("Idempotency-Key" = String, Header, description = "One key per logical call.")
    ),
    responses(
        (status = 200, description = "A page of revocations.", body = RevocationPage),
        (status = 400, description = "An unknown cursor or a bad limit.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Cannot answer now; retry (with `Retry-After` when given).", body = Problem, content_type = "application/problem+json")
    )
)]
fn revocations() {}

/// Whether the platform takes cases now.
#[utoipa::path(
    get, path = "/v1/health", tag = "health",
    responses(
        (status = 200, description = "Taking cases.", body = Health),
        (status = 503, description = "Not taking cases; `detail` says why.", body = Health)
    )
)]
fn health() {}

/// The contract's OpenAPI 3.1 document, as published.
pub fn document() -> String {
    let mut json = PlatformContract::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    json.push('\n');
    json
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_published_document_is_the_derived_one() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let path = root.join(super::PUBLISHED_PATH);
        let derived = super::document();
        if std::env::var_os("TONGBAN_WRITE_OPENAPI").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &derived).unwrap();
        }
        let published = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            published == derived,
            "{} differs from the contract's types; if the change is deliberate, run \
             TONGBAN_WRITE_OPENAPI=1 cargo test -p tongban-node openapi and commit the file",
            super::PUBLISHED_PATH
        );
        let value: serde_json::Value = serde_json::from_str(&published).unwrap();
        assert_eq!(value["openapi"], "3.1.0");
    }
}
