//! Citizens' evaluations (好差评): after a decision the citizen rates their case at the
//! portal where they filed — five levels, one evaluation per case, an optional comment
//! checked like every text field — and the rating travels, signed by the filing region,
//! through the gateway to the region that handled the case. A poor rating (dissatisfied
//! or worse) opens a follow-up there, due in `[evaluations] follow_up_working_days` of
//! the handling region's calendar. Satisfaction is counted at the filing node by
//! handling province and one-thing (each evaluation once), so the federation's sum is
//! national; the alert rules compare each province with the median.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State, rejection::JsonRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use serde::Deserialize;
use serde_json::json;
use tongban_proto::{
    rules::{calendar::business_now, text},
    v1::{EvaluationLevel, Stage, SubmitEvaluationRequest, SubmitEvaluationResponse},
};
use tonic::Request;

use crate::{
    context::NodeContext,
    error::{NodeError, region_code},
    evaluation_config::EvaluationConfig,
    evaluation_metrics::{FollowUpLabels, GivenLabels},
    portal_errors::{MAX_BODY, body_refused, error, no_such_case},
    receipt_token::{self, ReceiptTokens},
    signed_calls::SignatureCheck,
    store::evaluations::{Evaluated, NewEvaluation, Received, ReceivedEvaluation, evaluation_key},
    verified_origin::VerifiedOrigin,
};

/// Longest comment, in characters.
pub const MAX_COMMENT: usize = 500;

/// The level's name at the portal and in metrics (`very_satisfied` … `very_dissatisfied`).
pub fn level_name(level: EvaluationLevel) -> &'static str {
    match level {
        EvaluationLevel::VerySatisfied => "very_satisfied",
        EvaluationLevel::Satisfied => "satisfied",
        EvaluationLevel::BasicallySatisfied => "basically_satisfied",
        EvaluationLevel::Dissatisfied => "dissatisfied",
        EvaluationLevel::VeryDissatisfied => "very_dissatisfied",
        EvaluationLevel::Unspecified => "unspecified",
    }
}

fn parse_level(name: &str) -> Option<EvaluationLevel> {
    [
        EvaluationLevel::VerySatisfied,
        EvaluationLevel::Satisfied,
        EvaluationLevel::BasicallySatisfied,
        EvaluationLevel::Dissatisfied,
        EvaluationLevel::VeryDissatisfied,
    ]
    .into_iter()
    .find(|l| level_name(*l) == name)
}

/// Whether a rating opens a follow-up.
pub fn is_poor(level: EvaluationLevel) -> bool {
    matches!(
        level,
        EvaluationLevel::Dissatisfied | EvaluationLevel::VeryDissatisfied
    )
}

/// A comment's problem, if any (checked at the portal and again at the handling node).
fn comment_problem(comment: &str) -> Option<String> {
    if comment.chars().count() > MAX_COMMENT {
        return Some(format!("is longer than {MAX_COMMENT} characters"));
    }
    text::problem(comment).map(str::to_owned)
}

/// What the evaluation route needs.
#[derive(Clone)]
pub struct EvaluationState {
    pub ctx: Arc<NodeContext>,
    pub receipts: ReceiptTokens,
    pub config: EvaluationConfig,
}

/// `POST /v1/applications/{case_number}/evaluation` with the receipt's token, body
/// `{"level": "satisfied", "comment": "…"}`.
pub fn routes(state: EvaluationState) -> Router {
    Router::new()
        .route("/v1/applications/{case_number}/evaluation", post(evaluate))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(Arc::new(state))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Evaluation {
    level: String,
    #[serde(default)]
    comment: String,
}

async fn evaluate(
    State(state): State<Arc<EvaluationState>>,
    Path(case_number): Path<String>,
    headers: HeaderMap,
    body: Result<Json<Evaluation>, JsonRejection>,
) -> Response {
    let token = headers
        .get(receipt_token::HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let not_found = no_such_case;
    if !state.receipts.verify(&case_number, token) {
        return not_found();
    }
    let Json(asked) = match body {
        Ok(b) => b,
        Err(rejection) => return body_refused(&rejection),
    };
    let mut problems = Vec::new();
    let level = parse_level(&asked.level);
    if level.is_none() {
        problems.push(json!({"field": "level", "problem": "must be very_satisfied, satisfied, basically_satisfied, dissatisfied or very_dissatisfied"}));
    }
    if let Some(problem) = comment_problem(&asked.comment) {
        problems.push(json!({"field": "comment", "problem": problem}));
    }
    let Some(level) = level.filter(|_| problems.is_empty()) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_evaluation",
            "the evaluation is not valid".into(),
            json!(problems),
        );
    };
    match record_given(&state, case_number, level, asked.comment.trim().to_owned()).await {
        Ok(Some(body)) => (StatusCode::CREATED, Json(body)).into_response(),
        Ok(None) => not_found(),
        Err((status, code, message)) => error(status, code, message, json!([])),
    }
}

type Refusal = (StatusCode, &'static str, String);

/// Keeps the evaluation and its delivery; `None` for a case not filed here.
async fn record_given(
    state: &EvaluationState,
    case_number: String,
    level: EvaluationLevel,
    comment: String,
) -> Result<Option<serde_json::Value>, Refusal> {
    let unavailable = |e: crate::db_error::StoreError| {
        tracing::error!(error = %e, "evaluation not stored");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the evaluation could not be stored; please retry".to_owned(),
        )
    };
    let ctx = &state.ctx;
    let Some(record) = ctx
        .store
        .application(case_number.clone())
        .await
        .map_err(unavailable)?
    else {
        return Ok(None);
    };
    let decided = matches!(
        Stage::try_from(record.status.stage),
        Ok(Stage::Approved | Stage::Rejected | Stage::Terminated)
    );
    if !decided {
        return Err((
            StatusCode::CONFLICT,
            "not_decided",
            "a case is evaluated after its decision".into(),
        ));
    }
    let handling = region_code(&record.target_region, "case.target_region").map_err(|e| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
    })?;
    let now = business_now();
    let request = SubmitEvaluationRequest {
        case_number: case_number.clone(),
        origin_region: ctx.region.to_string(),
        level: level as i32,
        comment,
        evaluated_at: Some(prost_types::Timestamp {
            seconds: now.unix_timestamp(),
            nanos: 0,
        }),
    };
    let local = ctx.prefix.contains(&handling);
    let given = NewEvaluation {
        request: request.clone(),
        target_region: record.target_region.clone(),
        one_thing_id: record.one_thing_id.clone(),
        forward: !local,
    };
    match ctx.store.evaluate(given).await.map_err(unavailable)? {
        Evaluated::AlreadyEvaluated => {
            return Err((
                StatusCode::CONFLICT,
                "already_evaluated",
                "this case was evaluated already: one evaluation per case".into(),
            ));
        }
        Evaluated::Recorded => {}
    }
    count_given(ctx, &record.target_region, &record.one_thing_id, level);
    // Handled here: received at once, no federation call.
    let follow_up_due = if local {
        keep_received(ctx, &state.config, &request, &record.one_thing_id)
            .await
            .map_err(|e| {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    e.to_string(),
                )
            })?
    } else {
        String::new()
    };
    Ok(Some(json!({
        "case_number": case_number,
        "level": level_name(level),
        "handling_region": record.target_region,
        "follow_up_due": follow_up_due,
    })))
}

/// Counts an evaluation given here, by handling province.
fn count_given(ctx: &NodeContext, handling: &str, one_thing: &str, level: EvaluationLevel) {
    if let Some(metrics) = &ctx.metrics {
        metrics
            .evaluations
            .given
            .get_or_create(&GivenLabels {
                handling_region: handling.chars().take(2).collect(),
                one_thing: one_thing.to_owned(),
                level: level_name(level),
            })
            .inc();
    }
}

/// `Node/SubmitEvaluation` at the handling region: the case must be one its platform
/// handled, decided, filed at the region that signed the evaluation.
pub async fn receive(
    ctx: &NodeContext,
    config: &EvaluationConfig,
    request: Request<SubmitEvaluationRequest>,
    origin: VerifiedOrigin,
) -> Result<SubmitEvaluationResponse, NodeError> {
    let signed = SignatureCheck::of(&request)?;
    let evaluation = request.into_inner();
    EvaluationLevel::try_from(evaluation.level)
        .ok()
        .filter(|l| *l != EvaluationLevel::Unspecified)
        .ok_or_else(|| NodeError::invalid("level", "unknown level"))?;
    if let Some(problem) = comment_problem(&evaluation.comment) {
        return Err(NodeError::invalid("comment", problem));
    }
    let filed_at = region_code(&evaluation.origin_region, "origin_region")?;
    origin.require(&filed_at, "origin_region")?;
    signed.signer.require(&filed_at, "origin_region")?;
    let case = ctx
        .platform
        .case(&evaluation.case_number)
        .await?
        .ok_or_else(|| {
            NodeError::FailedPrecondition(format!(
                "case {:?} was not handled here",
                evaluation.case_number
            ))
        })?;
    if case.origin_region != evaluation.origin_region {
        return Err(NodeError::PermissionDenied(
            "the case was filed at another region".into(),
        ));
    }
    let decided = matches!(
        Stage::try_from(case.status.stage),
        Ok(Stage::Approved | Stage::Rejected | Stage::Terminated)
    );
    if !decided {
        return Err(NodeError::FailedPrecondition(
            "a case is evaluated after its decision".into(),
        ));
    }
    ctx.store
        .keep_signed(signed.evidence(
            &evaluation.case_number,
            &evaluation_key(&evaluation.case_number),
        ))
        .await?;
    let follow_up_due = keep_received(ctx, config, &evaluation, &case.one_thing_id).await?;
    Ok(SubmitEvaluationResponse { follow_up_due })
}

/// Keeps a received evaluation (opening its follow-up when poor); the follow-up's due
/// date, empty for none or where the calendar cannot set one.
async fn keep_received(
    ctx: &NodeContext,
    config: &EvaluationConfig,
    evaluation: &SubmitEvaluationRequest,
    one_thing_id: &str,
) -> Result<String, NodeError> {
    let level = EvaluationLevel::try_from(evaluation.level).unwrap_or_default();
    let follow_up_due = is_poor(level).then(|| {
        let today = business_now().date();
        ctx.calendar
            .in_force
            .get()
            .for_region(ctx.region.as_str())
            .add_working_days(today, config.follow_up_working_days)
            .map(|d| d.to_string())
            .unwrap_or_default()
    });
    let received = ReceivedEvaluation {
        case_number: evaluation.case_number.clone(),
        origin_region: evaluation.origin_region.clone(),
        one_thing_id: one_thing_id.to_owned(),
        level: evaluation.level,
        comment: evaluation.comment.clone(),
        evaluated_ms: evaluation
            .evaluated_at
            .as_ref()
            .map_or(0, |t| t.seconds * 1000),
        follow_up_due: follow_up_due.clone(),
    };
    match ctx.store.receive_evaluation(received).await? {
        Received::Conflict => Err(NodeError::FailedPrecondition(
            "this case was evaluated already, differently".into(),
        )),
        // A retry answers what the first delivery was answered, not a date counted now.
        Received::Repeat(due) => Ok(due.unwrap_or_default()),
        Received::New => {
            if let (Some(metrics), true) = (&ctx.metrics, follow_up_due.is_some()) {
                metrics
                    .evaluations
                    .follow_ups
                    .get_or_create(&FollowUpLabels {
                        one_thing: one_thing_id.to_owned(),
                        level: level_name(level),
                    })
                    .inc();
            }
            if let Some(due) = &follow_up_due {
                tracing::warn!(
                    case = %evaluation.case_number,
                    level = level_name(level),
                    due = %due,
                    "a poor evaluation opened a follow-up"
                );
            }
            Ok(follow_up_due.unwrap_or_default())
        }
    }
}
