//! The gateway's reports of lookups it answered from its cache: the issuer was not
//! asked, so the person's access log here learns of them only this way. Each report is
//! checked like any request (a bad one refuses the batch, naming it) and recorded once
//! however often the gateway delivers it.

use std::time::SystemTime;

use tongban_proto::{
    rules::{calendar::business_now, region::RegionPrefix, resident_id::ResidentId},
    v1::{AccessReport, RecordAccessesRequest, RecordAccessesResponse},
};

use crate::{
    context::NodeContext,
    error::NodeError,
    instants::{now_ms, remote_ms},
    store::{AccessKind, ReportedAccess},
};

/// Reports one request may carry.
pub const MAX_REPORTS: usize = 1000;
/// The longest report id, one-thing id and case number.
const MAX_TEXT: usize = 128;

/// Records a batch of reports; answers how many were new.
pub async fn record(
    ctx: &NodeContext,
    request: RecordAccessesRequest,
) -> Result<RecordAccessesResponse, NodeError> {
    if request.reports.len() > MAX_REPORTS {
        return Err(NodeError::invalid(
            "reports",
            format!("at most {MAX_REPORTS} reports a request"),
        ));
    }
    let now = now_ms();
    let rows = request
        .reports
        .into_iter()
        .enumerate()
        .map(|(i, report)| checked(ctx, i, report, now))
        .collect::<Result<Vec<_>, _>>()?;
    let recorded = ctx.store.record_reported_accesses(rows).await?;
    Ok(RecordAccessesResponse {
        recorded: u32::try_from(recorded).unwrap_or(u32::MAX),
    })
}

fn checked(
    ctx: &NodeContext,
    i: usize,
    report: AccessReport,
    now: i64,
) -> Result<ReportedAccess, NodeError> {
    let invalid =
        |field: &str, problem: String| NodeError::invalid(format!("reports[{i}].{field}"), problem);
    let text = |field: &str, value: &str, required: bool| {
        let ok = (!required || !value.is_empty())
            && value.len() <= MAX_TEXT
            && value.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(())
        } else {
            Err(invalid(
                field,
                format!("must be up to {MAX_TEXT} visible ASCII characters"),
            ))
        }
    };
    text("report_id", &report.report_id, true)?;
    let kind = AccessKind::parse(&report.kind)
        .ok_or_else(|| invalid("kind", "must be identity, license or licenses".into()))?;
    let holder = ResidentId::parse(&report.holder_id_number, ctx.regions, business_now().date())
        .map_err(|e| invalid("holder_id_number", e.to_string()))?;
    let requester = RegionPrefix::parse(&report.requester_region)
        .map_err(|e| invalid("requester_region", e.to_string()))?;
    // The gateway refused the lookup without the applicant's request; a report is
    // recorded all the same (the person's log must show the lookup), saying so.
    let consent =
        tongban_proto::rules::consent::checked(report.purpose.as_ref(), SystemTime::now())
            .ok()
            .map(Into::into);
    let purpose = report.purpose.unwrap_or_default();
    text("purpose.one_thing_id", &purpose.one_thing_id, false)?;
    text("purpose.case_number", &purpose.case_number, false)?;
    let license_id = match kind {
        AccessKind::License => {
            text("license_id", &report.license_id, true)?;
            Some(report.license_id)
        }
        _ => None,
    };
    Ok(ReportedAccess {
        report_id: report.report_id,
        holder_hash: holder.keyed_hash(&ctx.id_hash_key),
        kind,
        license_id,
        requester_region: requester.to_string(),
        one_thing_id: purpose.one_thing_id,
        case_number: purpose.case_number,
        at_ms: remote_ms(report.at.as_ref(), now),
        consent,
    })
}
