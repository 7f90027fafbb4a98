//! The contract's JSON bodies. Field names are the published ones: renaming a field
//! here changes the contract (the OpenAPI document is derived from these types, and a
//! test compares it with the published file).
//!
//! Timestamps are RFC 3339 with an offset (`2026-12-03T09:30:00+08:00`), dates
//! `YYYY-MM-DD`. Personal data (ID numbers, names) travel only in bodies, never in a
//! path or query string, where proxies and access logs would keep them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `PUT /v1/cases/{case_number}`: the node hands a case delivered to this region to the
/// platform. Idempotent by case number: the same case again answers the first answer;
/// another payload under the same number is a conflict (`409`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CaseTakeover {
    /// Federation case number, `<origin 6-digit code>-<YYYYMMDD>-<8-digit sequence>`.
    pub case_number: String,
    /// National catalog id of the one-thing (一件事).
    pub one_thing_id: String,
    /// Catalog version the form was validated against.
    pub catalog_version: String,
    /// 6-digit GB/T 2260 code of the region where the citizen filed.
    pub origin_region: String,
    /// 6-digit code of this (the handling) region.
    pub target_region: String,
    /// `single` or `joint` (several regions handle a part).
    pub handling_mode: String,
    pub applicant: Applicant,
    /// The one form (一表申请), field name to value, validated against the catalog.
    pub form: BTreeMap<String, String>,
    pub materials: Vec<Material>,
    /// Form fields the filing region filled in from recognized licenses.
    #[serde(default)]
    pub prefilled_fields: Vec<String>,
    /// For a joint case, the other handling regions.
    #[serde(default)]
    pub joint_regions: Vec<String>,
    /// For a joint case, the catalog part this region handles (e.g. `move_in`); the
    /// case number is the whole case's.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub joint_part: String,
    /// When the citizen filed, RFC 3339.
    pub filed_at: String,
    /// Promised completion date, `YYYY-MM-DD`.
    pub promised_date: String,
    /// The application exactly as it crossed the federation (protobuf, base64): the
    /// record of what was filed. Two take-overs of one case conflict when it differs.
    pub payload: String,
}

/// The applicant. Personal data: over TLS only, never logged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Applicant {
    /// Resident ID number (GB 11643-1999), 18 characters.
    pub id_number: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phone: String,
}

/// A material the applicant supplied or the filing region recognized.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Material {
    /// Material id from the catalog item.
    pub material_id: String,
    /// `license` (an electronic license; `reference` is its id) or `upload`.
    pub source: String,
    pub reference: String,
}

/// A case as the platform holds it: the answer to a take-over and to `GET
/// /v1/cases/{case_number}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CaseView {
    pub case_number: String,
    /// The platform's own reference for the case.
    pub reference: String,
    pub one_thing_id: String,
    pub origin_region: String,
    /// The platform's own status code (mapped by the node onto the canonical states).
    pub status: String,
    /// Human-readable detail the citizen may read.
    #[serde(default)]
    pub detail: String,
    /// Increases with every change of this case, from 1: the filing region keeps the
    /// highest it saw, so a repeated or lower one is ignored there.
    #[schema(minimum = 1)]
    pub sequence: u64,
    pub updated_at: String,
}

/// One status change, as the feed `GET /v1/case-events` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CaseEvent {
    /// Opaque position of this event in the feed; `after=<cursor>` resumes after it.
    pub cursor: String,
    pub case_number: String,
    pub one_thing_id: String,
    pub origin_region: String,
    /// The case's `sequence` after this change (from 1).
    #[schema(minimum = 1)]
    pub sequence: u64,
    /// The status code before the change; absent for the case's first event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_status: Option<String>,
    /// The status code after the change.
    pub status: String,
    #[serde(default)]
    pub detail: String,
    /// When the change was made, RFC 3339.
    pub at: String,
}

/// A page of the case-event feed. Events are in the order the platform made them;
/// every event is listed exactly once over the pages; `next_cursor` is where the next
/// page starts (the last event's cursor, or the request's `after` on an empty page).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CaseEventPage {
    pub events: Vec<CaseEvent>,
    pub next_cursor: String,
    /// True when more events follow right away (the page was full).
    pub more: bool,
}

/// `POST /v1/persons/lookup`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PersonLookup {
    pub id_number: String,
}

/// A person the region's register knows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Person {
    pub id_number: String,
    pub name: String,
    /// 6-digit code of the registered (home, 户籍) region.
    pub home_region: String,
    /// `low`, `substantial` (checked against the household registration) or `high`.
    pub assurance_level: String,
}

/// `POST /v1/licenses/by-holder`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HolderLookup {
    pub holder_id_number: String,
}

/// An electronic license (电子证照) issued by this region.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct License {
    /// `<issuing region 6-digit code>-<serial>`.
    pub license_id: String,
    pub license_type: String,
    pub issuing_region: String,
    pub holder_id_number: String,
    pub holder_name: String,
    /// What the license states, by field name.
    pub fields: BTreeMap<String, String>,
    /// `YYYY-MM-DD`.
    pub valid_from: String,
    /// `YYYY-MM-DD`; absent for no expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    pub issued_at: String,
    /// When it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_reason: Option<String>,
}

/// The licenses of one holder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LicenseList {
    pub licenses: Vec<License>,
}

/// One revocation, as the feed `GET /v1/revocations` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Revocation {
    pub cursor: String,
    pub license_id: String,
    pub reason: String,
    pub revoked_at: String,
}

/// A page of the revocation feed (ordered and paged as the case-event feed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RevocationPage {
    pub revocations: Vec<Revocation>,
    pub next_cursor: String,
    pub more: bool,
}

/// `GET /v1/health`: `200` with `ok` while the platform takes cases, `503` otherwise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Every error answer: an RFC 9457 problem (`application/problem+json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem, e.g. `urn:tongban:platform:conflict`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What exactly was wrong, naming the field for a bad request. Never personal data.
    #[serde(default)]
    pub detail: String,
}

/// Problem kinds the contract names.
pub mod problem {
    pub const BAD_REQUEST: &str = "urn:tongban:platform:bad-request";
    pub const UNAUTHENTICATED: &str = "urn:tongban:platform:unauthenticated";
    pub const PURPOSE_REQUIRED: &str = "urn:tongban:platform:purpose-required";
    pub const NOT_FOUND: &str = "urn:tongban:platform:not-found";
    pub const CONFLICT: &str = "urn:tongban:platform:conflict";
    pub const INVALID_TRANSITION: &str = "urn:tongban:platform:invalid-transition";
    pub const UNAVAILABLE: &str = "urn:tongban:platform:unavailable";
}

/// Page size bounds of the feeds: `limit` defaults to 100 and is capped at 1000.
pub const DEFAULT_PAGE: u32 = 100;
pub const MAX_PAGE: u32 = 1000;
