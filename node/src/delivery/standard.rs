//! Same standard as a local filing (同标准办理): a delivered application meets the
//! shared rule set (`tongban_proto::rules::standard`) that the origin's portal applied,
//! excusing nothing, against the catalog version the application names, its materials
//! included (each once, no more than the item takes). Problems are named under
//! `application.` (`application.applicant.name`, `application.materials`).

use std::sync::Arc;

use tongban_proto::{
    rules::calendar::business_now,
    rules::catalog::{Catalog, CatalogItem, HandlingMode},
    rules::region::RegionCode,
    rules::resident_id::ResidentId,
    rules::standard::{self, Filing, GivenMaterial, Problem},
    v1::{self, Application, MaterialSource},
};

use crate::{context::NodeContext, error::NodeError};

/// Checks the application to the shared standard; the applicant's ID number.
pub fn check(ctx: &NodeContext, application: &Application) -> Result<ResidentId, NodeError> {
    let applicant = application
        .applicant
        .as_ref()
        .ok_or_else(|| NodeError::invalid("application.applicant", "required"))?;
    let filing = Filing {
        one_thing_id: &application.one_thing_id,
        id_number: &applicant.id_number,
        name: &applicant.name,
        mode: HandlingMode::try_from(application.mode).ok(),
        form: &application.form,
    };
    let today = business_now().date();
    // The applicant is judged before the catalog is looked up: a bad one is refused
    // for good even while the catalogs disagree.
    standard::applicant(&filing, ctx.regions, today).map_err(|p| refusal(p, ""))?;
    let catalog = named_catalog(ctx, &application.catalog_version)?;
    let standard = standard::check(&catalog, &filing, ctx.regions, today, |_, _| false)
        .map_err(|p| refusal(p, &catalog.version))?;
    standard::materials(standard.item, &application.materials, |m| GivenMaterial {
        material_id: &m.material_id,
        source: MaterialSource::try_from(m.source).unwrap_or(MaterialSource::Unspecified),
        reference: &m.reference,
    })
    .map_err(|p| refusal(vec![p], &catalog.version))?;
    offered_at_both_ends(ctx, standard.item, application)?;
    joint_part(ctx, standard.item, application, &standard.applicant)?;
    Ok(standard.applicant)
}

/// A featured one-thing travels only between regions that offer it: the region it was
/// filed at, and this one, which handles it (judged by the catalog version the
/// application names, so the verdict is final).
fn offered_at_both_ends(
    ctx: &NodeContext,
    item: &CatalogItem,
    application: &Application,
) -> Result<(), NodeError> {
    let origin = RegionCode::parse(&application.origin_region)
        .map_err(|e| NodeError::invalid("application.origin_region", e.to_string()))?;
    standard::offered(item, &origin, "filed at")
        .and_then(|()| standard::offered(item, &ctx.region, "handled by"))
        .map_err(|problem| NodeError::invalid("application.one_thing_id", problem))
}

/// 多地联办: a joint delivery names a part of the item, and the part's own rule over
/// the form names the region it was delivered to (this region handles that part, not
/// another); any other delivery names no part.
fn joint_part(
    ctx: &NodeContext,
    item: &CatalogItem,
    application: &Application,
    applicant: &ResidentId,
) -> Result<(), NodeError> {
    let joint = application.mode == v1::HandlingMode::Joint as i32;
    let part_id = application.part_id.as_str();
    if !joint {
        return match part_id.is_empty() {
            true => Ok(()),
            false => Err(NodeError::invalid(
                "application.part_id",
                "only a joint application (HANDLING_MODE_JOINT) names a part",
            )),
        };
    }
    let part = item.part(part_id).ok_or_else(|| {
        NodeError::invalid(
            "application.part_id",
            format!("{part_id:?} is not a part of {}", item.id),
        )
    })?;
    let origin = RegionCode::parse(&application.origin_region)
        .map_err(|e| NodeError::invalid("application.origin_region", e.to_string()))?;
    let region = part
        .competent_region(&applicant.home_region(), &application.form, &origin)
        .map_err(|e| NodeError::invalid(format!("application.form.{}", e.field), e.problem))?;
    let region = ctx.regions.routed(region);
    if region.as_str() != application.target_region {
        return Err(NodeError::invalid(
            "application.target_region",
            format!(
                "part {part_id} of {} is handled by region {region}, not {}",
                item.id, application.target_region
            ),
        ));
    }
    Ok(())
}

/// The catalog version the application names (it never changes), so the verdict is
/// final: a form that fails under its own version's rules fails for good. A version
/// this node does not know (newer than its copy, or older than the ones it keeps) is a
/// configuration matter: the sender keeps the case pending, counted as blocked, until
/// the catalogs agree.
fn named_catalog(ctx: &NodeContext, named: &str) -> Result<Arc<Catalog>, NodeError> {
    if named.is_empty() {
        return Ok(ctx.catalog.get());
    }
    ctx.catalog.version(named).ok_or_else(|| {
        // A newer version than ours, or an earlier one this node never fetched: ask
        // the gateway for it now rather than at the next turn.
        ctx.catalog.want_version(named);
        NodeError::UnknownCatalog(format!(
            "the application names catalog {named:?}, which this node does not \
             know (it has {}); deliver again once the catalogs agree",
            ctx.catalog.get().version
        ))
    })
}

/// A delivery's refusal names one field, as it always has: the applicant's first
/// problem, else the one-thing's, else the form's (all of them, with the catalog
/// version they were judged by), else the mode's.
fn refusal(problems: Vec<Problem>, catalog_version: &str) -> NodeError {
    let rank = |p: &Problem| match p.field.split('.').next() {
        Some("applicant") => 0,
        Some("one_thing_id") => 1,
        Some("form") => 2,
        _ => 3,
    };
    let Some(first) = problems.iter().min_by_key(|p| rank(p)) else {
        return NodeError::invalid("application", "does not meet the standard");
    };
    if rank(first) == 2 {
        let form: Vec<String> = problems
            .iter()
            .filter(|p| rank(p) == 2)
            .map(Problem::to_string)
            .collect();
        return NodeError::invalid(
            "application.form",
            format!("{} (catalog {catalog_version})", form.join("; ")),
        );
    }
    NodeError::invalid(
        format!("application.{}", first.field),
        first.problem.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(field: &str, problem: &str) -> Problem {
        Problem {
            field: field.into(),
            problem: problem.into(),
        }
    }

    fn refused(problems: Vec<Problem>) -> String {
        refusal(problems, "2026.1").to_string()
    }

    #[test]
    fn a_refusal_names_one_field_under_application() {
        assert_eq!(
            refused(vec![problem("applicant.name", "is required")]),
            "application.applicant.name: is required"
        );
        assert_eq!(
            refused(vec![
                problem("form.start_date", "is required"),
                problem("mode", "Joint is not offered"),
            ]),
            "application.form: form.start_date: is required (catalog 2026.1)"
        );
        assert_eq!(
            refused(vec![
                problem("form.a", "is required"),
                problem("form.b", "is not a date"),
            ]),
            "application.form: form.a: is required; form.b: is not a date (catalog 2026.1)"
        );
        assert_eq!(
            refused(vec![problem("mode", "Joint is not offered")]),
            "application.mode: Joint is not offered"
        );
    }
}
