//! One notice of requirements (一次告知): everything a citizen needs to know before
//! filing a one-thing, in one answer — the services it bundles, the materials (and which
//! of them the federation fetches as electronic licenses instead, so nothing already
//! issued is asked for), the form's fields with their rules, which region handles it and
//! its time limit in that region's working days; and, for an identified applicant, which
//! of their materials are already available by recognition, asked of their home region
//! through the gateway as a filing's pre-review would (and recorded in their access log
//! like any lookup).

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{
        Path, Query, State,
        rejection::{JsonRejection, QueryRejection},
    },
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::Date;
use tongban_proto::{
    rules::{
        calendar::business_now,
        catalog::{CatalogItem, CompetentRegion, FieldType, HandlingMode, MaterialKind},
        consent,
        region::RegionCode,
        resident_id::ResidentId,
        standard,
    },
    v1::{ListLicensesRequest, LookupPurpose, VerdictOutcome, VerifyIdentityRequest},
};

use crate::{
    calendar::NodeCalendar,
    context::NodeContext,
    filing::receipt::outcome_name,
    gateway_client::GatewayClient,
    portal_errors::{MAX_BODY, body_refused, error, without_long_numbers},
};

/// The notice for one one-thing.
#[derive(Debug, Serialize)]
pub struct Requirements {
    pub one_thing_id: String,
    pub name: String,
    pub description: String,
    pub catalog_version: String,
    /// The services it bundles, each with its department.
    pub services: Vec<Service>,
    /// How it may be handled: `fully_online`, `proxy_acceptance`, `joint`.
    pub modes: Vec<&'static str>,
    pub handling: Handling,
    pub materials: Vec<MaterialNotice>,
    pub form: Vec<FieldNotice>,
    /// 多地联办: the parts a joint filing is split into, each handled by its own
    /// region, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub joint_parts: Vec<PartNotice>,
    /// For an identified applicant: what the federation already holds for them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applicant: Option<ApplicantNotice>,
}

#[derive(Debug, Serialize)]
pub struct Service {
    pub name: String,
    pub department: String,
}

/// Who handles the case and by when.
#[derive(Debug, Serialize)]
pub struct Handling {
    /// `applicant_home`, `form_field` or `filing_region`.
    pub rule: &'static str,
    /// The rule in words.
    pub explanation: String,
    /// The form field naming the region, for `form_field`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub time_limit_working_days: u32,
    /// The handling region, where known before filing (the filing region; the
    /// applicant's home region once they are identified; the region asked about).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The date promised if filed today, in the handling region's official calendar;
    /// absent where the region is not known yet or the calendar does not reach it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promised_if_filed_today: Option<String>,
}

/// One part of a joint filing.
#[derive(Debug, Serialize)]
pub struct PartNotice {
    pub id: String,
    pub name: String,
    /// Who handles it, in words (the form field naming its region, for `form_field`).
    pub handled_by: String,
    /// Parts approved before it starts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Working days once it starts.
    pub time_limit_working_days: u32,
}

#[derive(Debug, Serialize)]
pub struct MaterialNotice {
    pub id: String,
    pub name: String,
    pub required: bool,
    /// `license`: an electronic license the federation fetches from its issuer (bring
    /// nothing); `upload`: a file to upload.
    pub kind: &'static str,
    /// For a license: every license type, from any region, accepted for it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accepted_license_types: Vec<String>,
    /// What the citizen does about it, in words.
    pub how: String,
}

#[derive(Debug, Serialize)]
pub struct FieldNotice {
    pub name: String,
    pub label: String,
    #[serde(rename = "type")]
    pub field_type: &'static str,
    pub required: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// The field's rule in words, as pre-review checks it.
    pub rule: String,
    /// Filled in from this license type when left empty (无感申报).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filled_from_license: Option<String>,
}

/// What the federation holds for an identified applicant.
#[derive(Debug, Default, Serialize)]
pub struct ApplicantNotice {
    /// The identity check's outcome (`recognized`, `not_recognized`,
    /// `cannot_verify_now`, ...): materials are listed only for a recognized person.
    pub identity: String,
    /// Materials a license the applicant holds stands in for: nothing to bring.
    pub available: Vec<Available>,
    /// Required materials still to bring or upload.
    pub still_needed: Vec<String>,
    /// False when their home region could not be asked now (ask again later).
    pub complete: bool,
}

#[derive(Debug, Serialize)]
pub struct Available {
    pub material_id: String,
    pub license_type: String,
    pub issuing_region: String,
}

/// The notice for `item` at a node of `filing_region`, `today`; `asked_region` is the
/// handling region when the citizen already knows it (a form-field rule).
pub fn notice(
    item: &CatalogItem,
    catalog_version: &str,
    calendar: &NodeCalendar,
    filing_region: RegionCode,
    asked_region: Option<RegionCode>,
    today: Date,
) -> Requirements {
    let (rule, explanation, field, region) = match &item.competent_region {
        CompetentRegion::ApplicantHome => (
            "applicant_home",
            "由申请人户籍地（公民身份号码所示地区）办理".to_owned(),
            None,
            asked_region,
        ),
        CompetentRegion::FormField { field } => (
            "form_field",
            format!("由表单字段 {field} 所填地区办理"),
            Some(field.clone()),
            asked_region,
        ),
        CompetentRegion::FilingRegion => (
            "filing_region",
            "由受理地办理".to_owned(),
            None,
            Some(filing_region),
        ),
    };
    let promised = region.and_then(|region| calendar.promised_date(item, &region, today));
    Requirements {
        one_thing_id: item.id.clone(),
        name: item.name.clone(),
        description: item.description.clone(),
        catalog_version: catalog_version.to_owned(),
        services: item
            .services
            .iter()
            .map(|s| Service {
                name: s.name.clone(),
                department: s.department.clone(),
            })
            .collect(),
        modes: item.modes.iter().map(|m| mode_name(*m)).collect(),
        handling: Handling {
            rule,
            explanation,
            field,
            time_limit_working_days: item.time_limit_working_days,
            region: region.map(|r| r.to_string()),
            promised_if_filed_today: promised.map(|d| d.to_string()),
        },
        materials: item.materials.iter().map(material_notice).collect(),
        form: item.form.iter().map(field_notice).collect(),
        joint_parts: item
            .parts
            .iter()
            .map(|p| PartNotice {
                id: p.id.clone(),
                name: p.name.clone(),
                handled_by: match &p.competent_region {
                    CompetentRegion::ApplicantHome => "申请人户籍地".to_owned(),
                    CompetentRegion::FormField { field } => format!("表单字段 {field} 所填地区"),
                    CompetentRegion::FilingRegion => "受理地".to_owned(),
                },
                after: p.after.clone(),
                time_limit_working_days: p
                    .time_limit_working_days
                    .unwrap_or(item.time_limit_working_days),
            })
            .collect(),
        applicant: None,
    }
}

fn mode_name(mode: HandlingMode) -> &'static str {
    match mode {
        HandlingMode::FullyOnline => "fully_online",
        HandlingMode::ProxyAcceptance => "proxy_acceptance",
        HandlingMode::Joint => "joint",
    }
}

fn material_notice(m: &tongban_proto::rules::catalog::Material) -> MaterialNotice {
    let license = m.kind == MaterialKind::License;
    let mut types = m.recognized_license_types.clone();
    if types.is_empty() {
        types.extend(m.license_type.clone());
    }
    MaterialNotice {
        id: m.id.clone(),
        name: m.name.clone(),
        required: m.required,
        kind: if license { "license" } else { "upload" },
        accepted_license_types: if license { types } else { Vec::new() },
        how: if license {
            "电子证照，由联邦向发证地调取，无需提交".to_owned()
        } else {
            "需上传".to_owned()
        },
    }
}

fn field_notice(f: &tongban_proto::rules::catalog::FormField) -> FieldNotice {
    let (field_type, rule) = match f.field_type {
        FieldType::Text => (
            "text",
            format!(
                "文本，至多 {} 字，不含控制字符和双向格式字符",
                f.max_length
                    .unwrap_or(tongban_proto::rules::catalog::DEFAULT_TEXT_MAX_LENGTH)
            ),
        ),
        FieldType::Date => ("date", "日期，YYYY-MM-DD".to_owned()),
        FieldType::IdNumber => (
            "id_number",
            "18 位公民身份号码（GB 11643，含校验码）".to_owned(),
        ),
        FieldType::RegionCode => (
            "region_code",
            "6 位行政区划代码（GB/T 2260），须为现行区划".to_owned(),
        ),
        FieldType::Choice => (
            "choice",
            format!("从以下选项中选择：{}", f.options.join("、")),
        ),
        FieldType::Phone => ("phone", "11 位手机号码，以 1 开头".to_owned()),
        FieldType::CreditCode => (
            "credit_code",
            "18 位统一社会信用代码（GB 32100，含校验码）".to_owned(),
        ),
    };
    let rule = if f.required {
        format!("必填；{rule}")
    } else {
        format!("选填；{rule}")
    };
    FieldNotice {
        name: f.name.clone(),
        label: f.label.clone(),
        field_type,
        required: f.required,
        options: f.options.clone(),
        max_length: f.max_length,
        rule,
        filled_from_license: f.prefill.as_ref().map(|p| p.license_type.clone()),
    }
}

/// What the federation holds for `applicant` (checked by the caller) for `item`: their
/// identity verified and their home region's licenses listed, at once, as pre-review
/// asks them (a lookup recorded in their access log with the one-thing and no case).
pub async fn for_applicant(
    client: &GatewayClient,
    timeout: Duration,
    item: &CatalogItem,
    applicant: &ResidentId,
    name: &str,
) -> ApplicantNotice {
    // Asking what they hold is the applicant's request that it be fetched.
    let purpose = LookupPurpose {
        one_thing_id: item.id.clone(),
        case_number: String::new(),
        applicant_request: Some(consent::request("notice", crate::store::now_ms())),
    };
    let asked = async {
        tokio::join!(
            client.verify_identity(
                VerifyIdentityRequest {
                    id_number: applicant.as_str().to_owned(),
                    name: name.to_owned(),
                    purpose: Some(purpose.clone()),
                },
                None,
            ),
            client.list_licenses(
                ListLicensesRequest {
                    holder_id_number: applicant.as_str().to_owned(),
                    issuing_region: String::new(),
                    purpose: Some(purpose.clone()),
                },
                None,
            ),
        )
    };
    let required = || {
        item.materials
            .iter()
            .filter(|m| m.required)
            .map(|m| m.id.clone())
            .collect::<Vec<_>>()
    };
    let Ok((identity, licenses)) = tokio::time::timeout(timeout, asked).await else {
        return ApplicantNotice {
            identity: "cannot_verify_now".into(),
            still_needed: required(),
            ..Default::default()
        };
    };
    let identity = match identity {
        Ok(verdict) => outcome_name(verdict.outcome),
        Err(_) => "cannot_verify_now".to_owned(),
    };
    if identity != "recognized" {
        // Nothing about a person is told to whoever cannot show who they are.
        return ApplicantNotice {
            complete: identity != "cannot_verify_now",
            identity,
            still_needed: required(),
            ..Default::default()
        };
    }
    let (held, complete) = match licenses {
        Ok(list) if list.outcome == VerdictOutcome::Recognized as i32 => (list.licenses, true),
        Ok(list) => (
            Vec::new(),
            list.outcome != VerdictOutcome::CannotVerifyNow as i32,
        ),
        Err(_) => (Vec::new(), false),
    };
    let mut available = Vec::new();
    let mut still_needed = Vec::new();
    for m in &item.materials {
        let standing_in = held.iter().find(|v| {
            v.outcome == VerdictOutcome::Recognized as i32 && v.satisfies_materials.contains(&m.id)
        });
        match standing_in {
            Some(v) => available.push(Available {
                material_id: m.id.clone(),
                license_type: v.license_type.clone(),
                issuing_region: v.issuing_region.clone(),
            }),
            None if m.required => still_needed.push(m.id.clone()),
            None => {}
        }
    }
    ApplicantNotice {
        identity,
        available,
        still_needed,
        complete,
    }
}

/// What the requirements routes need.
#[derive(Clone)]
pub struct RequirementsState {
    pub ctx: Arc<NodeContext>,
    pub client: GatewayClient,
    /// How long the applicant's lookups may take together (pre-review's).
    pub timeout: Duration,
}

/// `GET /v1/one-things/{id}/requirements[?region=<code>]` and `POST` to it with the
/// applicant.
pub fn routes(state: RequirementsState) -> Router {
    Router::new()
        .route(
            "/v1/one-things/{id}/requirements",
            get(anonymous).post(for_identified),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(Arc::new(state))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AskedRegion {
    /// The handling region, where the citizen knows it (a form-field rule).
    #[serde(default)]
    region: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForApplicant {
    applicant: Person,
    #[serde(default)]
    region: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Person {
    id_number: String,
    name: String,
}

async fn anonymous(
    State(state): State<Arc<RequirementsState>>,
    Path(id): Path<String>,
    asked: Result<Query<AskedRegion>, QueryRejection>,
) -> Response {
    let region = match asked {
        Ok(Query(asked)) => asked.region,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                without_long_numbers(&rejection.body_text()),
                json!([]),
            );
        }
    };
    match notice_of(&state, &id, region.as_deref(), None) {
        Ok((notice, _)) => Json(notice).into_response(),
        Err(refused) => refused.into_response(),
    }
}

async fn for_identified(
    State(state): State<Arc<RequirementsState>>,
    Path(id): Path<String>,
    body: Result<Json<ForApplicant>, JsonRejection>,
) -> Response {
    let Json(asked) = match body {
        Ok(b) => b,
        Err(rejection) => return body_refused(&rejection),
    };
    let today = business_now().date();
    let applicant = standard::applicant_id(&asked.applicant.id_number, state.ctx.regions, today);
    let name = standard::applicant_name(&asked.applicant.name);
    let (applicant, name) = match (applicant, name) {
        (Ok(applicant), Ok(name)) => (applicant, name.to_owned()),
        (applicant, name) => {
            let mut fields = Vec::new();
            if let Err(problem) = applicant {
                fields.push(json!({ "field": "applicant.id_number", "problem": problem }));
            }
            if let Err(problem) = name {
                fields.push(json!({ "field": "applicant.name", "problem": problem }));
            }
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                "the applicant is not valid".into(),
                json!(fields),
            );
        }
    };
    let home = applicant.home_region();
    let (mut notice, item) = match notice_of(&state, &id, asked.region.as_deref(), Some(home)) {
        Ok(found) => found,
        Err(refused) => return refused.into_response(),
    };
    notice.applicant =
        Some(for_applicant(&state.client, state.timeout, &item, &applicant, &name).await);
    Json(notice).into_response()
}

/// Why no notice: an unknown one-thing (never quoted back), a featured one-thing this
/// region does not offer, or a region that is not a known division.
enum Refused {
    UnknownOneThing { catalog_version: String },
    NotOffered(String),
    Region,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::UnknownOneThing { catalog_version } => error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("not a one-thing of catalog {catalog_version}"),
                json!([{ "field": "one_thing_id", "problem": "unknown" }]),
            ),
            Refused::NotOffered(problem) => error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "not_offered",
                problem.clone(),
                json!([{ "field": "one_thing_id", "problem": problem }]),
            ),
            Refused::Region => error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                "region must be the 6-digit code of a known division".into(),
                json!([{ "field": "region", "problem": "not a known GB/T 2260 division" }]),
            ),
        }
    }
}

/// The notice for the one-thing `id`, with the handling region known from `region` (as
/// asked) or the applicant's `home`.
fn notice_of(
    state: &RequirementsState,
    id: &str,
    region: Option<&str>,
    home: Option<RegionCode>,
) -> Result<(Requirements, CatalogItem), Refused> {
    let catalog = state.ctx.catalog.get();
    let Some(item) = catalog.item(id) else {
        return Err(Refused::UnknownOneThing {
            catalog_version: catalog.version.clone(),
        });
    };
    // Told here only what can be filed here (the three lists).
    tongban_proto::rules::standard::offered(item, &state.ctx.region, "filed at")
        .map_err(Refused::NotOffered)?;
    let asked = match region.map(RegionCode::parse) {
        None => None,
        Some(Ok(code)) if state.ctx.regions.is_known(&code) => Some(code),
        Some(_) => return Err(Refused::Region),
    };
    let known = match item.competent_region {
        CompetentRegion::ApplicantHome => home.or(asked),
        _ => asked,
    };
    let notice = notice(
        item,
        &catalog.version,
        &state.ctx.calendar,
        state.ctx.region,
        known,
        business_now().date(),
    );
    Ok((notice, item.clone()))
}
