//! Disputes of wrong data (异议处理): a window flags a license or identity the federation
//! recognized for a case as wrong; the dispute reaches the region that issued it
//! through the gateway (`RaiseDispute`, signed like a delivery), waits in that
//! region's queue (the node's operator listener lists it) until its staff settle it —
//! corrected (a new version issued, the old one revoked and its revocation published)
//! or confirmed — and the settlement returns to the flagging region and case
//! (`SettleDispute`). Both legs go through the outbox, so neither is lost to a crash or
//! an unreachable region. The flagging node counts disputes by issuing province (raised,
//! settled, time to settle) and both sides report their open ones
//! ([`crate::dispute_metrics`]).

use prost_types::Timestamp;
use serde::Deserialize;
use tongban_proto::{
    rules::{credentials, region::RegionCode, resident_id::ResidentId, text},
    v1::{
        DisputeOutcome, DisputeSubject, RaiseDisputeRequest, RaiseDisputeResponse,
        SettleDisputeRequest, SettleDisputeResponse,
    },
};

use crate::{
    context::NodeContext,
    dispute_metrics::{IssuerLabels, RaisedLabels, SettledLabels, province},
    error::NodeError,
    filing::Receipt,
    platform::Purpose,
    signed_calls::SignedMessage,
    store::{
        disputes::{Dispute, RAISED, RECEIVED, Settled, Settlement},
        now_ms, timestamp_ms,
    },
    verified_origin::VerifiedOrigin,
};

/// The longest reason or note, in characters.
pub const MAX_TEXT: usize = 500;

/// What a window says is wrong (`POST /cases/{case}/disputes`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flag {
    /// `license` or `identity`.
    pub subject: String,
    #[serde(default)]
    pub license_id: Option<String>,
    pub reason: String,
}

/// What the issuer's staff decide (`POST /disputes/{flagging region}/{id}/settle`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// `corrected` or `confirmed`.
    pub outcome: String,
    pub note: String,
    /// For a corrected license: the new version's id (issued here).
    #[serde(default)]
    pub corrected_license_id: Option<String>,
}

/// Why a flag or a settlement was refused, for the operator's answer.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("case {0:?} was not filed here")]
    UnknownCase(String),
    #[error("no such dispute here")]
    UnknownDispute,
    #[error("{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
    #[error("already settled: {0}")]
    AlreadySettled(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("the register: {0}")]
    Register(String),
}

fn invalid(field: &'static str, problem: impl Into<String>) -> Refused {
    Refused::Invalid {
        field,
        problem: problem.into(),
    }
}

/// 1 to 500 characters, checked like every text field.
fn checked_text(field: &'static str, value: &str) -> Result<String, Refused> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > MAX_TEXT {
        return Err(invalid(field, format!("1 to {MAX_TEXT} characters")));
    }
    match text::problem(value) {
        Some(problem) => Err(invalid(field, problem)),
        None => Ok(value.to_owned()),
    }
}

/// The issuer and data of what the window flags, as the case's receipt recorded it
/// recognized: a license recognized for the case, or the applicant's identity as their
/// home region confirmed it.
fn subject_of(
    flag: &Flag,
    receipt: &Receipt,
    applicant: &ResidentId,
) -> Result<(DisputeSubject, Option<String>, RegionCode, String), Refused> {
    match flag.subject.as_str() {
        "license" => {
            let id = flag
                .license_id
                .as_deref()
                .ok_or_else(|| invalid("license_id", "required for a license"))?;
            let recognized = receipt
                .materials_recognized
                .iter()
                .find(|m| m.license_id == id)
                .ok_or_else(|| invalid("license_id", "was not recognized for this case"))?;
            let issuer = credentials::license_issuer(id)
                .map_err(|e| invalid("license_id", e.to_string()))?;
            Ok((
                DisputeSubject::License,
                Some(id.to_owned()),
                issuer,
                recognized.license_type.clone(),
            ))
        }
        "identity" => {
            let confirmed = receipt
                .identity
                .as_ref()
                .is_some_and(|i| i.outcome == "recognized");
            if !confirmed {
                return Err(invalid(
                    "subject",
                    "the applicant's identity was not recognized",
                ));
            }
            Ok((
                DisputeSubject::Identity,
                None,
                applicant.home_region(),
                crate::dispute_metrics::IDENTITY.to_owned(),
            ))
        }
        _ => Err(invalid("subject", "must be license or identity")),
    }
}

/// A window flags data recognized for case `case_number` (filed here) as wrong; the
/// dispute as kept, its delivery to the issuer queued.
pub async fn flag(ctx: &NodeContext, case_number: &str, flag: Flag) -> Result<Dispute, Refused> {
    let record = ctx
        .store
        .application(case_number.to_owned())
        .await?
        .ok_or_else(|| Refused::UnknownCase(case_number.to_owned()))?;
    let application =
        <tongban_proto::v1::Application as prost::Message>::decode(record.payload.as_slice())
            .map_err(|e| Refused::Register(format!("stored application: {e}")))?;
    let applicant = application.applicant.clone().unwrap_or_default();
    let today = tongban_proto::rules::calendar::business_now().date();
    let id = ResidentId::parse(&applicant.id_number, ctx.regions, today)
        .map_err(|e| Refused::Register(format!("stored applicant: {e}")))?;
    let receipt = Receipt::stored(&record.receipt, &application);
    let (subject, license_id, issuer, data) = subject_of(&flag, &receipt, &id)?;
    let reason = checked_text("reason", &flag.reason)?;
    let raised_ms = now_ms();
    let dispute = Dispute {
        dispute_id: String::new(),
        role: RAISED.to_owned(),
        case_number: case_number.to_owned(),
        counterpart: issuer.to_string(),
        one_thing_id: record.one_thing_id.clone(),
        subject: flag.subject.clone(),
        license_id: license_id.clone(),
        data: data.clone(),
        reason: reason.clone(),
        raised_ms,
        outcome: None,
        note: None,
        corrected_license_id: None,
        settled_ms: None,
    };
    let request = RaiseDisputeRequest {
        dispute_id: String::new(),
        case_number: case_number.to_owned(),
        flagging_region: ctx.region.to_string(),
        one_thing_id: record.one_thing_id,
        subject: subject as i32,
        license_id: license_id.unwrap_or_default(),
        holder_id_number: id.as_str().to_owned(),
        reason,
        raised_at: Some(timestamp_ms(raised_ms)),
    };
    let kept = ctx.store.raise_dispute(dispute, request).await?;
    if let Some(metrics) = &ctx.metrics {
        metrics
            .disputes
            .raised
            .get_or_create(&RaisedLabels {
                issuer: province(&kept.counterpart),
                data,
            })
            .inc();
    }
    Ok(kept)
}

/// The issuer receives a dispute about data it issued, from the region that owns the
/// case (verified by the gateway and by its signature).
pub async fn receive(
    ctx: &NodeContext,
    origin: &VerifiedOrigin,
    signed: &SignedMessage,
    request: RaiseDisputeRequest,
) -> Result<RaiseDisputeResponse, NodeError> {
    let flagging = RegionCode::parse(&request.flagging_region)
        .map_err(|e| NodeError::invalid("flagging_region", e.to_string()))?;
    origin.require(&flagging, "flagging_region")?;
    signed.signer.require(&flagging, "flagging_region")?;
    if !request.case_number.starts_with(flagging.as_str()) {
        return Err(NodeError::invalid(
            "case_number",
            "must be a case of the flagging region",
        ));
    }
    let expected_id = format!("{}:", request.case_number);
    if !request.dispute_id.starts_with(&expected_id) || request.dispute_id.len() > 64 {
        return Err(NodeError::invalid(
            "dispute_id",
            "must be <case number>:<n>",
        ));
    }
    let reason = checked_text("reason", &request.reason)
        .map_err(|e| NodeError::invalid("reason", e.to_string()))?;
    let today = tongban_proto::rules::calendar::business_now().date();
    let holder = ResidentId::parse(&request.holder_id_number, ctx.regions, today)
        .map_err(|e| NodeError::invalid("holder_id_number", e.to_string()))?;
    let holder_hash = holder.keyed_hash(&ctx.id_hash_key);
    let (subject, data) = match DisputeSubject::try_from(request.subject) {
        Ok(DisputeSubject::License) => {
            let issued_here = credentials::license_issuer(&request.license_id)
                .is_ok_and(|issuer| ctx.prefix.contains(&issuer));
            let purpose = Purpose::new(request.one_thing_id.clone(), request.case_number.clone());
            let record = match issued_here {
                true => ctx.registry.license(&request.license_id, &purpose).await?,
                false => None,
            };
            let record = record
                .filter(|r| r.holder_hash == holder_hash)
                .ok_or_else(|| {
                    NodeError::NotFound("no such license of this holder was issued here".into())
                })?;
            ("license", record.license_type)
        }
        Ok(DisputeSubject::Identity) if ctx.prefix.contains(&holder.home_region()) => {
            ("identity", crate::dispute_metrics::IDENTITY.to_owned())
        }
        Ok(DisputeSubject::Identity) => {
            return Err(NodeError::NotFound(
                "the person is not a resident here".into(),
            ));
        }
        _ => return Err(NodeError::invalid("subject", "must be license or identity")),
    };
    let dispute = Dispute {
        dispute_id: request.dispute_id,
        role: RECEIVED.to_owned(),
        case_number: request.case_number,
        counterpart: flagging.to_string(),
        one_thing_id: request.one_thing_id.chars().take(64).collect(),
        subject: subject.to_owned(),
        license_id: (subject == "license").then_some(request.license_id),
        data,
        reason,
        raised_ms: request
            .raised_at
            .as_ref()
            .map_or_else(now_ms, |t| t.seconds.saturating_mul(1000)),
        outcome: None,
        note: None,
        corrected_license_id: None,
        settled_ms: None,
    };
    let new = ctx
        .store
        .receive_dispute(dispute, holder_hash, now_ms())
        .await?;
    if new {
        tracing::warn!(flagging = %flagging, "a dispute of data issued here waits for its settlement");
    }
    Ok(RaiseDisputeResponse { duplicate: !new })
}

/// The issuer's staff settle a dispute received here; for a corrected license, the
/// old version is revoked (its revocation published through the outbox) and the new
/// one named. The settlement's return to the flagging region is queued.
pub async fn settle(
    ctx: &NodeContext,
    client: &crate::gateway_client::GatewayClient,
    outbox_written: &tokio::sync::Notify,
    (flagging_region, dispute_id): (String, String),
    decision: Decision,
) -> Result<Dispute, Refused> {
    let outcome = match decision.outcome.as_str() {
        "corrected" => DisputeOutcome::Corrected,
        "confirmed" => DisputeOutcome::Confirmed,
        _ => return Err(invalid("outcome", "must be corrected or confirmed")),
    };
    let note = checked_text("note", &decision.note)?;
    // The id is `<case number>:<n>`: read the case's disputes, not the whole queue.
    let case = dispute_id.rsplit_once(':').map(|(case, _)| case.to_owned());
    let open = ctx
        .store
        .disputes(RECEIVED, case)
        .await?
        .into_iter()
        .find(|d| d.counterpart == flagging_region && d.dispute_id == dispute_id)
        .ok_or(Refused::UnknownDispute)?;
    if let Some(outcome) = &open.outcome {
        return Err(Refused::AlreadySettled(outcome.clone()));
    }
    let corrected = match (outcome, open.license_id.as_deref()) {
        (DisputeOutcome::Corrected, Some(old)) => {
            Some(correct(ctx, client, outbox_written, old, &decision, &note).await?)
        }
        _ => None,
    };
    let settled_ms = now_ms();
    let settlement = Settlement {
        outcome: decision.outcome.clone(),
        note: note.clone(),
        corrected_license_id: corrected.clone(),
        settled_ms,
    };
    let request = SettleDisputeRequest {
        dispute_id: String::new(),
        case_number: String::new(),
        issuing_region: ctx.region.to_string(),
        outcome: outcome as i32,
        note,
        corrected_license_id: corrected.unwrap_or_default(),
        settled_at: Some(timestamp_ms(settled_ms)),
    };
    let settled = ctx
        .store
        .settle_dispute(flagging_region, dispute_id, settlement, request)
        .await?;
    outbox_written.notify_one();
    match settled {
        Settled::Now(dispute) => Ok(dispute),
        Settled::Already(dispute) => {
            Err(Refused::AlreadySettled(dispute.outcome.unwrap_or_default()))
        }
        Settled::Unknown => Err(Refused::UnknownDispute),
    }
}

/// A corrected license: the new version (issued here, another id) named, the old one
/// revoked in the register and its revocation queued to every gateway replica.
async fn correct(
    ctx: &NodeContext,
    client: &crate::gateway_client::GatewayClient,
    outbox_written: &tokio::sync::Notify,
    old: &str,
    decision: &Decision,
    note: &str,
) -> Result<String, Refused> {
    let new = decision
        .corrected_license_id
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("corrected_license_id", "required for a corrected license"))?;
    let issued_here = credentials::license_issuer(new).is_ok_and(|i| ctx.prefix.contains(&i));
    if !issued_here || new == old {
        return Err(invalid(
            "corrected_license_id",
            "must be another license issued here",
        ));
    }
    // The new version is in the register, of the same holder and type as the old.
    let purpose = Purpose::default();
    let register = |e: crate::platform::PlatformError| Refused::Register(e.to_string());
    let old_record = ctx
        .registry
        .license(old, &purpose)
        .await
        .map_err(register)?;
    let new_record = ctx
        .registry
        .license(new, &purpose)
        .await
        .map_err(register)?;
    let same = match (&old_record, &new_record) {
        (Some(o), Some(n)) => o.holder_hash == n.holder_hash && o.license_type == n.license_type,
        _ => false,
    };
    if !same {
        return Err(invalid(
            "corrected_license_id",
            "must be a license in the register of the same holder and type",
        ));
    }
    let reason = format!("corrected after a dispute: {note}");
    let reason: String = reason.chars().take(200).collect();
    let revoked = ctx
        .registry
        .revoke(old, &reason, now_ms())
        .await
        .map_err(|e| Refused::Register(e.to_string()))?;
    let revoked_ms = revoked.and_then(|r| r.revoked_ms).unwrap_or_else(now_ms);
    crate::revocations::publish(&ctx.store, client, outbox_written, old, &reason, revoked_ms)
        .await?;
    Ok(new.to_owned())
}

/// The flagging region receives the issuer's settlement of a dispute it raised, from
/// the region it raised it with (verified by the gateway and by its signature).
pub async fn settled(
    ctx: &NodeContext,
    origin: &VerifiedOrigin,
    signed: &SignedMessage,
    request: SettleDisputeRequest,
) -> Result<SettleDisputeResponse, NodeError> {
    let raised = ctx
        .store
        .disputes(RAISED, Some(request.case_number.clone()))
        .await?
        .into_iter()
        .find(|d| d.dispute_id == request.dispute_id)
        .ok_or_else(|| NodeError::FailedPrecondition("no such dispute was raised here".into()))?;
    let issuer = RegionCode::parse(&raised.counterpart)
        .map_err(|e| NodeError::invalid("dispute.counterpart", e.to_string()))?;
    origin.require(&issuer, "issuing_region")?;
    signed.signer.require(&issuer, "issuing_region")?;
    let outcome = match DisputeOutcome::try_from(request.outcome) {
        Ok(DisputeOutcome::Corrected) => "corrected",
        Ok(DisputeOutcome::Confirmed) => "confirmed",
        _ => {
            return Err(NodeError::invalid(
                "outcome",
                "must be corrected or confirmed",
            ));
        }
    };
    let note = checked_text("note", &request.note)
        .map_err(|e| NodeError::invalid("note", e.to_string()))?;
    let settlement = Settlement {
        outcome: outcome.to_owned(),
        note,
        corrected_license_id: Some(request.corrected_license_id.chars().take(128).collect())
            .filter(|s: &String| !s.is_empty()),
        settled_ms: request
            .settled_at
            .as_ref()
            .map_or_else(now_ms, |t: &Timestamp| t.seconds.saturating_mul(1000)),
    };
    let applied = ctx
        .store
        .apply_settlement(request.dispute_id, settlement)
        .await?;
    if let (Some(dispute), Some(metrics)) = (&applied, &ctx.metrics) {
        let issuer = province(&dispute.counterpart);
        metrics
            .disputes
            .settled
            .get_or_create(&SettledLabels {
                issuer: issuer.clone(),
                outcome: outcome.to_owned(),
            })
            .inc();
        let took = now_ms().saturating_sub(dispute.raised_ms).max(0);
        metrics
            .disputes
            .resolution
            .get_or_create(&IssuerLabels { issuer })
            .observe(took as f64 / 1000.0);
    }
    Ok(SettleDisputeResponse {
        applied: applied.is_some(),
    })
}
