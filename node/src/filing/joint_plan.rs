//! 多地联办 at the filing window: a joint filing split into the catalog's parts, each
//! with the region that handles it (by the part's own rule over the filled-in form),
//! whether this node handles it itself, and its promise in that region's calendar (a
//! part that waits counts from the promise of what it waits for).
//!
//! Two parts handled by one node are refused: a node receives a case once per case
//! number, and a status that node pushes must say which part it is about by who pushes
//! it ([`crate::joint`]). Such a filing stays within one region; it is filed there in
//! another mode.

use std::collections::BTreeMap;

use time::Date;
use tongban_proto::{
    rules::catalog::{CatalogItem, CompetentRegion, HandlingMode},
    v1::Stage,
};

use super::{
    check::Checked,
    request::{IntakeError, field},
};
use crate::{
    context::NodeContext,
    joint::{JointCase, PartProgress, waiting_detail},
};

/// The parts of a joint filing; `None` for a filing in another mode.
pub fn plan(
    ctx: &NodeContext,
    checked: &Checked,
    form: &BTreeMap<String, String>,
    today: Date,
) -> Result<Option<JointCase>, IntakeError> {
    if checked.mode != HandlingMode::Joint {
        return Ok(None);
    }
    let item = &checked.item;
    let home = checked.applicant.home_region();
    let peers = ctx.peers.get();
    let mut parts: Vec<PartProgress> = Vec::with_capacity(item.parts.len());
    let mut members = Vec::with_capacity(item.parts.len());
    for part in &item.parts {
        let region = part
            .competent_region(&home, form, &ctx.region)
            .map_err(|e| IntakeError::Invalid(vec![e.into()]))?;
        let region = ctx.regions.routed(region);
        let member = peers
            .member_of(&region)
            .map_or_else(|| region.province().to_string(), |p| p.to_string());
        if let Some(other) = members.iter().position(|m| *m == member) {
            return Err(same_node(
                item,
                &parts[other].id,
                &part.id,
                &part.competent_region,
                &member,
            ));
        }
        members.push(member);
        let from = part
            .after
            .iter()
            .filter_map(|a| parts.iter().find(|p| &p.id == a))
            .map(|p| day(&p.promised_date))
            .try_fold(today, |latest, promised| promised.map(|d| latest.max(d)));
        let days = part
            .time_limit_working_days
            .unwrap_or(item.time_limit_working_days);
        let promised = from
            .and_then(|from| {
                ctx.calendar
                    .working_days_after(&item.id, &region, from, days)
            })
            .map(|d| d.to_string())
            .unwrap_or_default();
        let started = part.after.is_empty();
        parts.push(PartProgress {
            id: part.id.clone(),
            name: part.name.clone(),
            region: region.to_string(),
            local: ctx.prefix.contains(&region),
            after: part.after.clone(),
            promised_date: promised,
            started,
            stage: Stage::Submitted as i32,
            detail: if started {
                format!("handed over to region {region}")
            } else {
                let names: Vec<String> = part
                    .after
                    .iter()
                    .filter_map(|a| item.part(a).map(|p| p.name.clone()))
                    .collect();
                waiting_detail(&names)
            },
            sequence: 0,
            reference: None,
        });
    }
    Ok(Some(JointCase { parts }))
}

/// The case's promise: the last of its parts' (empty if any part has none).
pub fn promised(joint: &JointCase) -> String {
    if joint.parts.iter().any(|p| p.promised_date.is_empty()) {
        return String::new();
    }
    joint
        .parts
        .iter()
        .map(|p| p.promised_date.as_str())
        .max()
        .unwrap_or_default()
        .to_owned()
}

/// The refusal of two parts handled by one node, named by the field that put the
/// second there.
fn same_node(
    item: &CatalogItem,
    first: &str,
    second: &str,
    rule: &CompetentRegion,
    member: &str,
) -> IntakeError {
    let at = match rule {
        CompetentRegion::FormField { field } => format!("form.{field}"),
        _ => "mode".to_owned(),
    };
    IntakeError::Invalid(vec![field(
        at,
        format!(
            "the parts {first} and {second} of {} would both be handled by region {member}'s \
             node: joint handling is for parts in different regions; file it there in \
             another mode",
            item.id
        ),
    )])
}

/// A stored `YYYY-MM-DD`, or `None` (no promise) when empty or unreadable.
fn day(promised: &str) -> Option<Date> {
    Date::parse(
        promised,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}
