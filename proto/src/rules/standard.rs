//! 同标准办理, as code: the one rule set an application meets wherever it is checked —
//! at the portal that takes the filing, where a delivery arrives at the handling node,
//! and at the gateway's identity lookups. Each party calls these functions instead of
//! writing the rule again, so the places cannot drift apart.
//!
//! Problems are named by the field of the filing (`applicant.name`, `one_thing_id`,
//! `mode`, `form.<field>`, `materials`); a caller that reads the fields under another
//! root (a delivery's `application.`) prefixes them. No problem text quotes a submitted
//! ID number or name.

use std::collections::BTreeMap;

use time::Date;

use crate::{
    rules::catalog::{Catalog, CatalogItem, FieldError, HandlingMode},
    rules::region::{RegionCode, RegionTable},
    rules::resident_id::ResidentId,
    rules::text,
    v1::MaterialSource,
};

/// Longest applicant name, in characters (the longest names on resident ID cards,
/// transliterated minority names included, fit well within it).
pub const NAME_MAX_CHARS: usize = 64;

/// One problem, by the filing's field name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub problem: String,
}

impl Problem {
    fn new(field: &str, problem: impl Into<String>) -> Problem {
        Problem {
            field: field.to_owned(),
            problem: problem.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl From<FieldError> for Problem {
    fn from(e: FieldError) -> Problem {
        Problem {
            field: format!("form.{}", e.field),
            problem: e.problem,
        }
    }
}

/// The applicant's name, trimmed: 1 to [`NAME_MAX_CHARS`] characters of free text
/// ([`text::problem`]). Length and characters are judged as submitted, before the trim,
/// so nothing typed (a trailing line break, padding past the limit) is passed over
/// unseen.
pub fn applicant_name(name: &str) -> Result<&str, &'static str> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        Err("is required")
    } else if name.chars().count() > NAME_MAX_CHARS {
        Err("is longer than 64 characters")
    } else if let Some(problem) = text::problem(name) {
        Err(problem)
    } else {
        Ok(trimmed)
    }
}

/// The applicant's resident ID number (GB 11643), valid on `today`.
pub fn applicant_id(
    id_number: &str,
    regions: &RegionTable,
    today: Date,
) -> Result<ResidentId, String> {
    ResidentId::parse(id_number, regions, today).map_err(|e| e.to_string())
}

/// The catalog item a filing names.
pub fn item<'c>(catalog: &'c Catalog, one_thing_id: &str) -> Result<&'c CatalogItem, String> {
    // Never quotes what was sent: anything may be pasted there, an ID number too.
    catalog
        .item(one_thing_id)
        .ok_or_else(|| format!("not a one-thing of catalog {}", catalog.version))
}

/// Whether `region` offers `item` (the three lists): `role` says what the region is to
/// the case (`filed at`, `handled by`).
pub fn offered(item: &CatalogItem, region: &RegionCode, role: &str) -> Result<(), String> {
    if item.offered_in(region) {
        return Ok(());
    }
    let offering: Vec<&str> = item.offering_regions().map(RegionCode::as_str).collect();
    Err(format!(
        "{} is a featured one-thing offered only by region {}; region {region} ({role}) \
         has not adopted it",
        item.id,
        offering.join(", ")
    ))
}

/// The handling mode: the one asked for, or the item's first; it must be offered.
pub fn mode(item: &CatalogItem, asked: Option<HandlingMode>) -> Result<HandlingMode, String> {
    let mode = asked
        .or_else(|| item.modes.first().copied())
        .unwrap_or(HandlingMode::FullyOnline);
    if item.allows_mode(mode) {
        Ok(mode)
    } else {
        Err(format!("{mode:?} is not offered for {}", item.id))
    }
}

/// The one form against the item (pre-review), every problem by field.
pub fn form(
    item: &CatalogItem,
    form: &BTreeMap<String, String>,
    regions: &RegionTable,
    today: Date,
) -> Result<(), Vec<FieldError>> {
    item.validate_form(form, regions, today).map_err(|e| e.0)
}

/// A material as a filing gives it: which one, where from, and its reference (trimmed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GivenMaterial<'a> {
    pub material_id: &'a str,
    pub source: MaterialSource,
    pub reference: &'a str,
}

/// Most entries a filing's `materials` may have: one per material of its item. The
/// catalog lists every material an item takes (any other is refused), so no filing
/// needs more; the cap bounds what one filing makes the federation do (a license lookup
/// at the gateway and an access-log write at the issuer per cited license, again on
/// every retry) by the catalog instead of by the size of a request.
pub fn max_materials(item: &CatalogItem) -> usize {
    item.materials.len()
}

/// The materials a filing gives, each once: at most [`max_materials`] entries (judged
/// on their number alone, before any is read), an exact repeat (same material, source
/// and reference) passed over, and a material given again with another reference or
/// source refused, naming the repeat. `view` reads an entry. The indexes of the entries
/// to keep, in order. No problem text quotes a submitted value.
pub fn materials<'a, T>(
    item: &CatalogItem,
    given: &'a [T],
    view: impl Fn(&'a T) -> GivenMaterial<'a>,
) -> Result<Vec<usize>, Problem> {
    let cap = max_materials(item);
    if given.len() > cap {
        return Err(Problem::new(
            "materials",
            format!(
                "has more entries than the {cap} materials this one-thing takes; give each \
                 material once"
            ),
        ));
    }
    let mut kept: Vec<(usize, GivenMaterial<'a>)> = Vec::with_capacity(given.len());
    for (i, entry) in given.iter().enumerate() {
        let material = view(entry);
        let Some(&(first, earlier)) = kept
            .iter()
            .find(|(_, m)| m.material_id == material.material_id)
        else {
            kept.push((i, material));
            continue;
        };
        if earlier == material {
            continue;
        }
        let (field, what) = if earlier.reference == material.reference {
            ("source", "source")
        } else {
            ("reference", "reference")
        };
        return Err(Problem::new(
            &format!("materials[{i}].{field}"),
            format!(
                "gives the material of materials[{first}] again with another {what}; give \
                 each material once"
            ),
        ));
    }
    Ok(kept.into_iter().map(|(i, _)| i).collect())
}

/// What a filing says, as the rules read it.
#[derive(Debug, Clone, Copy)]
pub struct Filing<'a> {
    pub one_thing_id: &'a str,
    pub id_number: &'a str,
    pub name: &'a str,
    pub mode: Option<HandlingMode>,
    pub form: &'a BTreeMap<String, String>,
}

/// A filing that meets the standard.
#[derive(Debug, Clone)]
pub struct Standard<'c> {
    pub item: &'c CatalogItem,
    pub applicant: ResidentId,
    /// Trimmed.
    pub name: String,
    pub mode: HandlingMode,
}

/// The applicant's part of the rule set, which needs no catalog: the ID number, then
/// the name (trimmed). A caller that cannot read the catalog yet may judge this part
/// first.
pub fn applicant<'f>(
    filing: &Filing<'f>,
    regions: &RegionTable,
    today: Date,
) -> Result<(ResidentId, &'f str), Vec<Problem>> {
    let mut problems = Vec::new();
    let id = applicant_id(filing.id_number, regions, today)
        .map_err(|p| problems.push(Problem::new("applicant.id_number", p)))
        .ok();
    let name = applicant_name(filing.name)
        .map_err(|p| problems.push(Problem::new("applicant.name", p)))
        .ok();
    match (id, name) {
        (Some(id), Some(name)) => Ok((id, name)),
        _ => Err(problems),
    }
}

/// The whole rule set over one filing: every problem found, by field. `excused` lets a
/// caller pass over form problems it will remedy itself (the portal fills in empty
/// fields a recognized license states); the handling node excuses nothing.
pub fn check<'c>(
    catalog: &'c Catalog,
    filing: &Filing<'_>,
    regions: &RegionTable,
    today: Date,
    excused: impl Fn(&CatalogItem, &FieldError) -> bool,
) -> Result<Standard<'c>, Vec<Problem>> {
    let mut problems = Vec::new();
    let item = item(catalog, filing.one_thing_id)
        .map_err(|p| problems.push(Problem::new("one_thing_id", p)))
        .ok();
    let applicant = applicant(filing, regions, today)
        .map_err(|p| problems.extend(p))
        .ok();
    let Some(item) = item else {
        return Err(problems);
    };
    if let Err(form_errors) = form(item, filing.form, regions, today) {
        problems.extend(
            form_errors
                .into_iter()
                .filter(|e| !excused(item, e))
                .map(Problem::from),
        );
    }
    let mode = mode(item, filing.mode)
        .map_err(|p| problems.push(Problem::new("mode", p)))
        .ok();
    match (applicant, mode) {
        (Some((applicant, name)), Some(mode)) if problems.is_empty() => Ok(Standard {
            item,
            applicant,
            name: name.to_owned(),
            mode,
        }),
        _ => Err(problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_to_64_characters_of_free_text() {
        assert_eq!(applicant_name("  张三 "), Ok("张三"));
        assert_eq!(applicant_name("   "), Err("is required"));
        assert_eq!(
            applicant_name(&"名".repeat(64)),
            Ok("名".repeat(64).as_str())
        );
        assert_eq!(
            applicant_name(&"名".repeat(65)),
            Err("is longer than 64 characters")
        );
        assert!(applicant_name("A\u{202E}B").is_err());
        assert!(applicant_name("A\nB").is_err());
    }

    #[test]
    fn materials_are_given_once_each_within_the_item_s_count() {
        let catalog = Catalog::embedded();
        let item = item(&catalog, "medical-treatment-registration").unwrap();
        let given = |id: &'static str, source, reference: &'static str| GivenMaterial {
            material_id: id,
            source,
            reference,
        };
        let check = |list: &[GivenMaterial<'static>]| materials(item, list, |m| *m);
        let id_card = given("id_card", MaterialSource::License, "310000-ID-1");
        let upload = given("referral_certificate", MaterialSource::Upload, "ab12");
        assert_eq!(check(&[id_card, upload]), Ok(vec![0, 1]));
        // An exact repeat is passed over.
        assert_eq!(check(&[id_card, upload, id_card]), Ok(vec![0, 1]));
        // The same material with another reference, or another source: refused.
        let other = given("id_card", MaterialSource::License, "310000-ID-2");
        let problem = check(&[id_card, upload, other]).unwrap_err();
        assert_eq!(problem.field, "materials[2].reference");
        assert!(problem.problem.contains("materials[0]"), "{problem}");
        assert!(!problem.problem.contains("310000-ID"), "{problem}");
        let paper = given("referral_certificate", MaterialSource::Paper, "ab12");
        assert_eq!(
            check(&[upload, paper]).unwrap_err().field,
            "materials[1].source"
        );
        // More entries than the item has materials: refused on the count alone, never read.
        assert_eq!(max_materials(item), 4);
        let many = vec![id_card; 10_000];
        let started = std::time::Instant::now();
        let problem = materials(item, &many, |_| unreachable!()).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_millis(10));
        assert_eq!(problem.field, "materials");
        assert_eq!(
            problem.problem,
            "has more entries than the 4 materials this one-thing takes; give each material once"
        );
        assert!(check(&[id_card; 4]).is_ok());
        assert!(check(&[id_card; 5]).is_err());
    }

    #[test]
    fn names_are_judged_as_submitted_before_the_trim() {
        assert!(applicant_name("张三\n").is_err());
        assert_eq!(
            applicant_name(&format!(" {}", "名".repeat(64))),
            Err("is longer than 64 characters")
        );
    }
}
