//! Form pre-review (智能预审): every problem in a submitted form, field by field, and
//! the required materials an application still lacks.

use std::collections::BTreeMap;
use std::fmt;

use time::Date;

use super::model::{CatalogItem, Material};
use crate::rules::region::RegionTable;
use crate::v1;

/// A problem with one form field, found by pre-review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field name (as submitted, for unknown fields).
    pub field: String,
    /// What is wrong. Never contains a submitted ID number.
    pub problem: String,
}

impl FieldError {
    pub(super) fn new(field: &str, problem: impl Into<String>) -> FieldError {
        FieldError {
            field: field.to_owned(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "form.{}: {}", self.field, self.problem)
    }
}

impl std::error::Error for FieldError {}

/// All problems pre-review found in a form, in the item's field order, then unknown
/// fields by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormErrors(pub Vec<FieldError>);

impl fmt::Display for FormErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FormErrors {}

impl CatalogItem {
    /// Pre-reviews a submitted form against this item and reports every problem found:
    /// unknown fields, missing required fields (empty or whitespace-only counts as
    /// missing) and values of the wrong type. `table` decides which region codes exist
    /// and `today` bounds birth dates in ID numbers. Error texts never echo a value that
    /// could be an ID number.
    pub fn validate_form(
        &self,
        form: &BTreeMap<String, String>,
        table: &RegionTable,
        today: Date,
    ) -> Result<(), FormErrors> {
        let mut errors = Vec::new();
        for field in &self.form {
            match form.get(&field.name) {
                Some(value) if !value.trim().is_empty() => {
                    if let Err(problem) = field.check_value(value, table, today) {
                        errors.push(FieldError::new(&field.name, problem));
                    }
                }
                _ if field.required => {
                    errors.push(FieldError::new(&field.name, "required field is missing"));
                }
                _ => {}
            }
        }
        let mut unknown: Vec<&String> = form
            .keys()
            .filter(|name| self.form_field(name).is_none())
            .collect();
        unknown.sort();
        let mut unnamed = 0;
        for name in unknown {
            // The key is the caller's: quoted back only if it has the shape of a field
            // name, so a value pasted as a key (an ID number, a name) is never echoed.
            if crate::rules::text::quotable_key(name) {
                errors.push(FieldError::new(name, "unknown field for this one-thing"));
            } else {
                unnamed += 1;
            }
        }
        if unnamed > 0 {
            // `*`: some keys of the form, unnamed on purpose.
            errors.push(FieldError::new(
                "*",
                format!(
                    "{unnamed} key(s) that are not field names of this one-thing (field \
                     names are lower-case letters, digits and underscores)"
                ),
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(FormErrors(errors))
        }
    }

    /// Required materials whose id is not among `provided`, in catalog order.
    pub fn missing_materials<'a>(&'a self, provided: &[v1::MaterialRef]) -> Vec<&'a Material> {
        self.materials
            .iter()
            .filter(|m| m.required && !provided.iter().any(|p| p.material_id == m.id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::catalog::test_support::{form, item, newborn_form, validate};

    #[test]
    fn valid_forms_pass() {
        let newborn = item("newborn-birth");
        validate(&newborn, &newborn_form()).unwrap();
        // Optional fields may be absent or blank.
        let mut with_blank = newborn_form();
        with_blank.insert("father_id_number".into(), "  ".into());
        validate(&newborn, &with_blank).unwrap();

        let startup = item("business-startup");
        let startup_form = form(&[
            ("company_name", "深圳市通办科技有限公司"),
            ("company_type", "有限责任公司"),
            ("business_region", "440305"),
            ("registered_capital", "100"),
            ("legal_representative_name", "李四"),
            ("legal_representative_id", "110105198001019010"),
            ("business_scope", &"软件开发；信息技术咨询服务。".repeat(30)),
            ("contact_phone", "13900139000"),
        ]);
        validate(&startup, &startup_form).unwrap();

        let featured = item("sh-foreigner-work");
        let featured_form = form(&[
            ("passport_name", "John Smith"),
            ("passport_number", "E12345678"),
            ("nationality", "United Kingdom"),
            ("employer_credit_code", "914403001922038216"),
            ("work_region", "310115"),
            ("position", "Engineer"),
            ("contract_start_date", "2027-01-04"),
            ("contact_phone", "13700137000"),
        ]);
        validate(&featured, &featured_form).unwrap();
    }

    /// A value pasted as a key (an ID number, a name) is never quoted back.
    #[test]
    fn unknown_keys_are_quoted_only_when_shaped_like_field_names() {
        let newborn = item("newborn-birth");
        let pasted = form(&[
            ("110101199003077777", "x"),
            ("张伟", "y"),
            ("favourite_colour", "蓝"),
        ]);
        let errors = validate(&newborn, &pasted).unwrap_err();
        let text = format!("{errors:?}");
        assert!(
            !text.contains("110101199003077777") && !text.contains("张伟"),
            "{text}"
        );
        assert!(errors.0.iter().any(|e| e.field == "favourite_colour"));
        assert!(
            errors
                .0
                .iter()
                .any(|e| e.field == "*" && e.problem.starts_with("2 key(s)")),
            "{text}"
        );
    }

    #[test]
    fn validate_form_names_every_bad_field() {
        let newborn = item("newborn-birth");
        let bad = form(&[
            ("child_sex", "未知"),
            ("child_birth_date", "2026-02-30"),
            ("birth_place", "999999"),
            ("mother_id_number", "440305199001019088"),
            ("father_id_number", "1101051980"),
            ("contact_phone", "  "),
            ("favourite_colour", "蓝"),
        ]);
        let errors = validate(&newborn, &bad).unwrap_err();
        let by_field: Vec<(&str, &str)> = errors
            .0
            .iter()
            .map(|e| (e.field.as_str(), e.problem.as_str()))
            .collect();
        assert_eq!(
            by_field,
            vec![
                ("child_name", "required field is missing"),
                ("child_sex", "must be one of: 男, 女"),
                ("child_birth_date", "is not a real calendar date"),
                ("birth_place", "region code 999999 is not a known division"),
                (
                    "mother_id_number",
                    "resident ID number has a bad check character: expected X, found 8"
                ),
                (
                    "father_id_number",
                    "resident ID number must have 18 characters, found 10"
                ),
                ("contact_phone", "required field is missing"),
                ("favourite_colour", "unknown field for this one-thing"),
            ]
        );
        let text = errors.to_string();
        assert!(text.starts_with("form.child_name: required field is missing; form.child_sex:"));
        assert!(!text.contains("440305199001019088"), "{text}");
        assert!(!text.contains("1101051980"), "{text}");
    }

    #[test]
    fn missing_materials_lists_required_ones_not_provided() {
        let newborn = item("newborn-birth");
        let provided = [v1::MaterialRef {
            material_id: "parent_id_card".into(),
            source: v1::MaterialSource::License as i32,
            reference: "L-1".into(),
        }];
        let missing: Vec<&str> = newborn
            .missing_materials(&provided)
            .iter()
            .map(|m| m.id.as_str())
            .collect();
        assert_eq!(
            missing,
            ["birth_medical_certificate", "parent_household_register"]
        );
        assert!(!newborn.material("marriage_certificate").unwrap().required);
    }
}
