//! The platform's records as the contract writes them: stages as the platform's own
//! status codes (through its table), instants in RFC 3339.

use tongban_proto::v1::Stage;

use super::problem::ApiProblem;
use crate::platform::{
    adapter::{CaseEvent, PlatformCase},
    contract::{
        status::{CanonicalStatus, StatusCodes},
        wire,
    },
    embedded::rfc3339_ms,
    register::PlatformRevocation,
};

/// The canonical state and the platform's code of a stored stage. A stage outside the
/// machine (data from before it) or a state without a code cannot be written: `503`.
pub fn status_of(codes: &StatusCodes, stage: i32) -> Result<(String, CanonicalStatus), ApiProblem> {
    let canonical = Stage::try_from(stage)
        .ok()
        .and_then(CanonicalStatus::of_stage)
        .ok_or_else(|| {
            ApiProblem::unavailable(format!("a case has stage {stage}, outside the machine"))
        })?;
    let code = codes.code_of(canonical).ok_or_else(|| {
        ApiProblem::unavailable(format!(
            "status_codes maps no code onto {}",
            canonical.as_str()
        ))
    })?;
    Ok((code.to_owned(), canonical))
}

fn ms_of(t: Option<&prost_types::Timestamp>) -> i64 {
    t.map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos / 1_000_000))
}

/// A case as `GET /v1/cases/{case_number}` answers it.
pub fn case_view(codes: &StatusCodes, case: &PlatformCase) -> Result<wire::CaseView, ApiProblem> {
    let (status, _) = status_of(codes, case.status.stage)?;
    Ok(wire::CaseView {
        case_number: case.case_number.clone(),
        reference: case.reference.clone(),
        one_thing_id: case.one_thing_id.clone(),
        origin_region: case.origin_region.clone(),
        status,
        detail: case.status.detail.clone(),
        sequence: case.status.sequence,
        updated_at: rfc3339_ms(ms_of(case.status.updated_at.as_ref())),
    })
}

/// A status change as the case-event feed lists it.
pub fn case_event(codes: &StatusCodes, event: &CaseEvent) -> Result<wire::CaseEvent, ApiProblem> {
    let (status, _) = status_of(codes, event.case.status.stage)?;
    let previous_status = event
        .previous
        .map(|p| status_of(codes, p as i32).map(|(code, _)| code))
        .transpose()?;
    Ok(wire::CaseEvent {
        cursor: event.cursor.clone(),
        case_number: event.case.case_number.clone(),
        one_thing_id: event.case.one_thing_id.clone(),
        origin_region: event.case.origin_region.clone(),
        sequence: event.case.status.sequence,
        previous_status,
        status,
        detail: event.case.status.detail.clone(),
        at: rfc3339_ms(ms_of(event.case.status.updated_at.as_ref())),
    })
}

/// A revocation as its feed lists it.
pub fn revocation(r: &PlatformRevocation) -> wire::Revocation {
    wire::Revocation {
        cursor: r.cursor.clone(),
        license_id: r.license_id.clone(),
        reason: r.reason.clone(),
        revoked_at: rfc3339_ms(r.revoked_ms),
    }
}
