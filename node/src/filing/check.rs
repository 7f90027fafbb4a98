//! A filing request read against the catalog, before anything is asked of anyone: the
//! shared rule set (同标准办理, `tongban_proto::rules::standard`) and the materials given (each once, no more than the item takes: the shared
//! rule, judged before any entry is read or looked up). Every problem is named by its
//! field.

use std::collections::BTreeMap;

use time::Date;
use tongban_proto::{
    rules::catalog::{Catalog, CatalogItem, FieldError, HandlingMode, MaterialKind},
    rules::credentials::license_issuer,
    rules::region::{RegionCode, RegionTable},
    rules::resident_id::ResidentId,
    rules::standard::{self, Filing, GivenMaterial},
    v1::{MaterialRef, MaterialSource},
};

use super::request::{
    FieldProblem, FilingRequest, IntakeError, MAX_MATERIAL_REFERENCE, MaterialInput,
    MaterialSourceInput, field,
};

/// A license the applicant cites for a material.
#[derive(Clone, Debug)]
pub struct CitedLicense {
    pub material_id: String,
    pub license_id: String,
}

/// A filing request read against the catalog (before anything is asked of anyone).
pub struct Checked {
    pub item: CatalogItem,
    pub catalog_version: String,
    pub applicant: ResidentId,
    /// Trimmed.
    pub name: String,
    pub phone: String,
    pub mode: HandlingMode,
    pub form: BTreeMap<String, String>,
    /// Uploads and paper materials, as given.
    pub provided: Vec<MaterialRef>,
    /// Licenses the applicant cites for materials.
    pub cited: Vec<CitedLicense>,
}

/// Reads a request against `catalog`: every problem named by its field, nothing asked
/// of the federation yet. Required fields that a recognized license can fill in may be
/// left empty here.
pub fn check(
    catalog: &Catalog,
    regions: &RegionTable,
    filed_at: &RegionCode,
    request: &FilingRequest,
    today: Date,
) -> Result<Checked, IntakeError> {
    let filing = Filing {
        one_thing_id: &request.one_thing_id,
        id_number: &request.applicant.id_number,
        name: &request.applicant.name,
        mode: request.mode,
        form: &request.form,
    };
    let excused =
        |item: &CatalogItem, e: &FieldError| prefillable_and_empty(item, &request.form, &e.field);
    let (standard, mut problems) = match standard::check(catalog, &filing, regions, today, excused)
    {
        Ok(standard) => (Some(standard), Vec::new()),
        Err(problems) => (None, problems.into_iter().map(FieldProblem::from).collect()),
    };
    let Ok(item) = standard::item(catalog, &request.one_thing_id) else {
        return Err(IntakeError::Invalid(problems));
    };
    // A featured one-thing is filed only where it is offered (the handling region is
    // judged once the form names it, in `compose`).
    if let Err(problem) = standard::offered(item, filed_at, "filed at") {
        problems.insert(0, field("one_thing_id", problem));
    }
    let (provided, cited) = materials(item, &request.materials, &mut problems);
    match standard {
        Some(standard) if problems.is_empty() => Ok(Checked {
            item: item.clone(),
            catalog_version: catalog.version.clone(),
            applicant: standard.applicant,
            name: standard.name,
            phone: request.applicant.phone.trim().to_owned(),
            mode: standard.mode,
            form: request.form.clone(),
            provided,
            cited,
        }),
        _ => Err(IntakeError::Invalid(problems)),
    }
}

/// Splits the materials given into uploads (and paper) and cited licenses, naming
/// every bad one by its index. Each material is given once (an exact repeat is passed
/// over: one lookup per cited license), and no more entries than the item has materials.
fn materials(
    item: &CatalogItem,
    input: &[MaterialInput],
    errors: &mut Vec<FieldProblem>,
) -> (Vec<MaterialRef>, Vec<CitedLicense>) {
    let kept = match standard::materials(item, input, |m| GivenMaterial {
        material_id: &m.material_id,
        source: source(m.source),
        reference: m.reference.trim(),
    }) {
        Ok(kept) => kept,
        Err(problem) => {
            errors.push(problem.into());
            return (Vec::new(), Vec::new());
        }
    };
    let mut provided = Vec::with_capacity(kept.len());
    let mut cited = Vec::new();
    for (i, m) in kept.into_iter().map(|i| (i, &input[i])) {
        let Some(material) = item.material(&m.material_id) else {
            errors.push(field(
                format!("materials[{i}].material_id"),
                format!("not a material of {}", item.id),
            ));
            continue;
        };
        let reference = m.reference.trim();
        if reference.is_empty() || reference.len() > MAX_MATERIAL_REFERENCE {
            errors.push(field(
                format!("materials[{i}].reference"),
                format!("must be 1 to {MAX_MATERIAL_REFERENCE} characters"),
            ));
            continue;
        }
        match m.source {
            MaterialSourceInput::License => {
                if material.kind != MaterialKind::License {
                    errors.push(field(
                        format!("materials[{i}].source"),
                        format!("{} is uploaded, not a license", material.id),
                    ));
                } else if let Err(e) = license_issuer(reference) {
                    errors.push(field(format!("materials[{i}].reference"), e.to_string()));
                } else {
                    cited.push(CitedLicense {
                        material_id: material.id.clone(),
                        license_id: reference.to_owned(),
                    });
                }
            }
            given => provided.push(MaterialRef {
                material_id: m.material_id.clone(),
                source: source(given) as i32,
                reference: reference.to_owned(),
            }),
        }
    }
    (provided, cited)
}

fn source(input: MaterialSourceInput) -> MaterialSource {
    match input {
        MaterialSourceInput::License => MaterialSource::License,
        MaterialSourceInput::Upload => MaterialSource::Upload,
        MaterialSourceInput::Paper => MaterialSource::Paper,
    }
}

/// Whether `field` (a form error's field) is one a recognized license may fill and the
/// applicant left empty.
pub fn prefillable_and_empty(
    item: &CatalogItem,
    form: &BTreeMap<String, String>,
    field: &str,
) -> bool {
    item.form_field(field).is_some_and(|f| f.prefill.is_some())
        && form.get(field).is_none_or(|v| v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filing::request::ApplicantInput;

    fn today() -> Date {
        time::macros::date!(2026 - 11 - 26)
    }

    fn request(one_thing_id: &str, name: &str, form: &[(&str, &str)]) -> FilingRequest {
        FilingRequest {
            one_thing_id: one_thing_id.into(),
            applicant: ApplicantInput {
                id_number: "11010519491231002X".into(),
                name: name.into(),
                phone: String::new(),
            },
            form: form
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            materials: Vec::new(),
            mode: None,
        }
    }

    fn medical(name: &str) -> FilingRequest {
        request(
            "medical-treatment-registration",
            name,
            &[
                ("treatment_region", "310115"),
                ("start_date", "2026-12-01"),
                ("reason", "异地长期居住"),
                ("contact_phone", "13800138000"),
            ],
        )
    }

    fn at(region: &str) -> RegionCode {
        RegionCode::parse(region).unwrap()
    }

    /// A featured one-thing is filed where it is offered only: Shanghai's item at
    /// Shanghai's window, not at Guangdong's.
    #[test]
    fn a_featured_item_is_filed_only_where_it_is_offered() {
        let mut request = medical("王小明");
        request.one_thing_id = "sh-foreigner-work".into();
        let at_44 = check(
            &Catalog::embedded(),
            RegionTable::embedded(),
            &at("440000"),
            &request,
            today(),
        );
        let Err(IntakeError::Invalid(problems)) = at_44 else {
            panic!("accepted at 44")
        };
        assert_eq!(problems[0].field, "one_thing_id");
        assert!(
            problems[0]
                .problem
                .contains("region 440000 (filed at) has not adopted it")
        );
        let at_31 = check(
            &Catalog::embedded(),
            RegionTable::embedded(),
            &at("310000"),
            &request,
            today(),
        );
        let Err(IntakeError::Invalid(problems)) = at_31 else {
            panic!("a medical form passes for sh-foreigner-work")
        };
        assert!(
            problems.iter().all(|p| p.field != "one_thing_id"),
            "{problems:?}"
        );
    }

    fn problems(request: &FilingRequest) -> Vec<(String, String)> {
        match check(
            &Catalog::embedded(),
            RegionTable::embedded(),
            &at("310000"),
            request,
            today(),
        ) {
            Err(IntakeError::Invalid(problems)) => {
                problems.into_iter().map(|p| (p.field, p.problem)).collect()
            }
            Err(other) => panic!("unexpected {other}"),
            Ok(_) => Vec::new(),
        }
    }

    #[test]
    fn a_good_filing_is_checked_with_its_name_trimmed() {
        let checked = check(
            &Catalog::embedded(),
            RegionTable::embedded(),
            &at("310000"),
            &medical(" 王小明 "),
            today(),
        )
        .unwrap();
        assert_eq!(checked.name, "王小明");
        assert_eq!(checked.mode, HandlingMode::FullyOnline);
    }

    #[test]
    fn names_are_refused_by_the_shared_rule_with_the_portal_s_messages() {
        let cases = [
            ("", "is required"),
            (&"张".repeat(65), "is longer than 64 characters"),
            ("张\u{202E}伟", "must not contain bidirectional"),
            ("张伟\n", "must not contain control characters"),
        ];
        for (name, expected) in cases {
            let found = problems(&medical(name));
            assert_eq!(found.len(), 1, "{name:?}: {found:?}");
            assert_eq!(found[0].0, "applicant.name");
            assert!(found[0].1.starts_with(expected), "{name:?}: {found:?}");
        }
    }

    #[test]
    fn a_bad_id_is_named_and_a_field_a_license_can_fill_is_excused() {
        let mut filing = request(
            "household-transfer",
            "王小明",
            &[
                // move_from_region left empty: a recognized household register fills it.
                ("move_to_region", "310115"),
                ("move_to_address", "上海市浦东新区世纪大道1号"),
                ("reason", "购房落户"),
                ("contact_phone", "13800138000"),
            ],
        );
        filing.applicant.id_number = "110105194912310021".into();
        let fields: Vec<String> = problems(&filing).into_iter().map(|p| p.0).collect();
        assert_eq!(fields, ["applicant.id_number"]);
    }

    fn cited(material_id: &str, reference: &str) -> MaterialInput {
        MaterialInput {
            material_id: material_id.into(),
            source: MaterialSourceInput::License,
            reference: reference.into(),
        }
    }

    #[test]
    fn one_material_cited_10_000_times_is_one_problem_found_at_once() {
        let mut filing = medical("王小明");
        filing.materials = vec![cited("id_card", "440000-ID-0001"); 10_000];
        let started = std::time::Instant::now();
        let found = problems(&filing);
        let took = started.elapsed();
        assert_eq!(
            found,
            [(
                "materials".to_owned(),
                "has more entries than the 4 materials this one-thing takes; give each \
                 material once"
                    .to_owned()
            )]
        );
        assert!(took < std::time::Duration::from_millis(100), "{took:?}");
    }

    #[test]
    fn a_repeated_material_is_looked_up_once_and_a_conflicting_one_refused() {
        let mut filing = medical("王小明");
        filing.materials = vec![
            cited("id_card", "440000-ID-0001"),
            cited("id_card", " 440000-ID-0001 "),
        ];
        let checked = check(
            &Catalog::embedded(),
            RegionTable::embedded(),
            &at("310000"),
            &filing,
            today(),
        )
        .unwrap();
        assert_eq!(checked.cited.len(), 1);
        filing.materials[1] = cited("id_card", "440000-ID-0002");
        assert_eq!(
            problems(&filing),
            [(
                "materials[1].reference".to_owned(),
                "gives the material of materials[0] again with another reference; give each \
                 material once"
                    .to_owned()
            )]
        );
    }

    #[test]
    fn material_references_have_their_own_limit() {
        let mut filing = medical("王小明");
        filing.materials.push(MaterialInput {
            material_id: "referral_certificate".into(),
            source: MaterialSourceInput::Upload,
            reference: "r".repeat(MAX_MATERIAL_REFERENCE + 1),
        });
        assert_eq!(
            problems(&filing),
            [(
                "materials[0].reference".to_owned(),
                "must be 1 to 128 characters".to_owned()
            )]
        );
    }
}
