//! The checks a take-over's body must pass before the platform takes the case: the
//! case number's shape and its agreement with the path, region codes, the applicant,
//! the payload's encoding. Each failure names the field, never its value.

use base64::Engine;
use tongban_proto::{
    rules::{region::RegionCode, region::RegionTable, resident_id::ResidentId, text},
    v1::Application,
};

use super::problem::ApiProblem;
use crate::platform::{contract::wire::CaseTakeover, embedded::id_problem};

/// Longest identifier-like field (one-thing id, catalog version).
const MAX_ID_LEN: usize = 128;

/// What a checked take-over gives the platform.
pub struct Takeover {
    pub application: Application,
    pub applicant: ResidentId,
    /// The application as it crossed the federation, decoded from base64.
    pub payload: Vec<u8>,
}

/// Whether `value` is a federation case number, `<6 digits>-<YYYYMMDD>-<8 digits>`
/// with a real date.
pub fn is_case_number(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let [region, day, serial] = parts.as_slice() else {
        return false;
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !(digits(region, 6) && digits(day, 8) && digits(serial, 8)) {
        return false;
    }
    let format = time::macros::format_description!("[year][month][day]");
    time::Date::parse(day, format).is_ok()
}

fn region(field: &str, value: &str, table: &RegionTable) -> Result<RegionCode, ApiProblem> {
    let code = RegionCode::parse(value).map_err(|_| {
        ApiProblem::bad_request(format!("{field}: must be a 6-digit GB/T 2260 region code"))
    })?;
    if !table.is_known(&code) {
        return Err(ApiProblem::bad_request(format!(
            "{field}: {code} is not a known region code"
        )));
    }
    Ok(code)
}

/// A short identifier-like field: present (if `required`), at most 128 characters,
/// plain text.
fn short_text(field: &str, value: &str, required: bool) -> Result<(), ApiProblem> {
    if required && value.trim().is_empty() {
        return Err(ApiProblem::bad_request(format!("{field}: required")));
    }
    if value.len() > MAX_ID_LEN {
        return Err(ApiProblem::bad_request(format!(
            "{field}: at most {MAX_ID_LEN} characters"
        )));
    }
    if let Some(why) = text::problem(value) {
        return Err(ApiProblem::bad_request(format!("{field}: {why}")));
    }
    Ok(())
}

/// Checks a take-over of `path_number` (the case number in the URL).
pub fn check(
    path_number: &str,
    body: CaseTakeover,
    table: &RegionTable,
) -> Result<Takeover, ApiProblem> {
    if !is_case_number(path_number) {
        return Err(ApiProblem::bad_request(
            "case_number (path): must be <6-digit region>-<YYYYMMDD>-<8 digits>",
        ));
    }
    if body.case_number != path_number {
        return Err(ApiProblem::bad_request(
            "case_number: differs from the case number in the path",
        ));
    }
    short_text("one_thing_id", &body.one_thing_id, true)?;
    short_text("catalog_version", &body.catalog_version, false)?;
    let origin = region("origin_region", &body.origin_region, table)?;
    if !body.case_number.starts_with(origin.as_str()) {
        return Err(ApiProblem::bad_request(
            "case_number: must begin with origin_region",
        ));
    }
    region("target_region", &body.target_region, table)?;
    for (i, joint) in body.joint_regions.iter().enumerate() {
        region(&format!("joint_regions[{i}]"), joint, table)?;
    }
    if !matches!(body.handling_mode.as_str(), "single" | "joint") {
        return Err(ApiProblem::bad_request(
            "handling_mode: must be single or joint",
        ));
    }
    if (body.handling_mode == "joint") == body.joint_part.is_empty() {
        return Err(ApiProblem::bad_request(
            "joint_part: a joint case names the part handled here, and only a joint case",
        ));
    }
    short_text("joint_part", &body.joint_part, false)?;
    let today = tongban_proto::rules::calendar::business_now().date();
    let applicant = ResidentId::parse(&body.applicant.id_number, table, today)
        .map_err(|e| ApiProblem::bad_request(format!("applicant.id_number: {}", id_problem(&e))))?;
    let name = body.applicant.name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ApiProblem::bad_request(
            "applicant.name: must be 1 to 64 characters",
        ));
    }
    if let Some(why) = text::problem(name) {
        return Err(ApiProblem::bad_request(format!("applicant.name: {why}")));
    }
    let payload = base64::engine::general_purpose::STANDARD
        .decode(body.payload.as_bytes())
        .map_err(|_| ApiProblem::bad_request("payload: must be standard base64"))?;
    let application = Application {
        case_number: body.case_number,
        one_thing_id: body.one_thing_id,
        catalog_version: body.catalog_version,
        origin_region: body.origin_region,
        target_region: body.target_region,
        ..Default::default()
    };
    Ok(Takeover {
        application,
        applicant,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_numbers_have_one_shape() {
        assert!(is_case_number("310000-20260101-00000001"));
        for bad in [
            "310000-20260230-00000001",
            "31000-20260101-00000001",
            "310000-20260101-0000001",
            "310000-20260101-00000001-1",
            "３10000-20260101-00000001",
            "",
        ] {
            assert!(!is_case_number(bad), "{bad}");
        }
    }
}
