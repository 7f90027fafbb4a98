//! 同标准办理, as code: the one rule set an application meets wherever it is checked —
//! at the portal that takes the filing, where a delivery arrives at the handling node,
//! and at the gateway's identity lookups. Each party calls these functions instead of
//! writing the rule again, so the places cannot drift apart.
//!
//! Problems are named by the field of the filing (`applicant.name`, `one_thing_id`,
//! `mode`, `form.<field>`); a caller that reads the fields under another root (a
//! delivery's `application.`) prefixes them. No problem text quotes a submitted ID
//! number or name.

use std::collections::BTreeMap;

use time::Date;

use crate::{
    rules::catalog::{Catalog, CatalogItem, FieldError, HandlingMode},
    rules::region::RegionTable,
    rules::resident_id::ResidentId,
    rules::text,
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
    catalog.item(one_thing_id).ok_or_else(|| {
        format!(
            "unknown one-thing {one_thing_id:?} in catalog {}",
            catalog.version
        )
    })
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
    fn names_are_judged_as_submitted_before_the_trim() {
        assert!(applicant_name("张三\n").is_err());
        assert_eq!(
            applicant_name(&format!(" {}", "名".repeat(64))),
            Err("is longer than 64 characters")
        );
    }
}
