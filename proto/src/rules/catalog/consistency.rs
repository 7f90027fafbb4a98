//! The consistency rules every catalog must satisfy, whatever its source (JSON or
//! protobuf), so that pre-review and the competent region are always computable.

use std::collections::HashSet;

use super::model::{
    Catalog, CatalogError, CatalogItem, CatalogList, CompetentRegion, FieldType, FormField,
    HandlingMode, Material, MaterialKind, Prefill,
};
use crate::rules::region::truncate_for_error;

/// Maximum length of ids (item ids, field names, material ids) and the version string.
pub(super) const MAX_ID_LEN: usize = 64;

impl Catalog {
    /// Checks the consistency rules: a usable version, unique item ids, and for each
    /// item unique field names and material ids, a competent-region field that exists,
    /// is required and has type `region_code`, choice fields with options, license
    /// materials with a license type, a time limit of at least one day, at least one
    /// mode, and a publishing region exactly for regional featured items.
    pub fn validate(&self) -> Result<(), CatalogError> {
        check_version(&self.version)?;
        let mut ids = HashSet::new();
        for item in &self.items {
            item.validate()?;
            if !ids.insert(item.id.as_str()) {
                return Err(CatalogError::DuplicateItem {
                    id: item.id.clone(),
                });
            }
        }
        Ok(())
    }
}

impl CatalogItem {
    /// Checks this item's consistency rules (see [`Catalog::validate`]), in order: the
    /// item's own fields, its materials, its form, its competent region, its time limit
    /// and modes. The first broken rule is the error.
    fn validate(&self) -> Result<(), CatalogError> {
        self.check_identity()?;
        self.check_materials()?;
        self.check_form()?;
        self.check_competent_region()?;
        self.check_time_limit_and_modes()?;
        self.check_parts()?;
        self.check_listing()
    }

    /// The error for a broken rule of this item at `field`.
    pub(super) fn fail(
        &self,
        field: impl Into<String>,
        problem: impl Into<String>,
    ) -> CatalogError {
        CatalogError::Item {
            item: truncate_for_error(&self.id, MAX_ID_LEN),
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// Id, name, publishing region (exactly for regional featured items) and the
    /// bundled services.
    fn check_identity(&self) -> Result<(), CatalogError> {
        check_id(&self.id).map_err(|p| self.fail("id", p))?;
        if self.name.trim().is_empty() {
            return Err(self.fail("name", "must not be empty"));
        }
        match (self.list, &self.publishing_region) {
            (CatalogList::RegionalFeatured, None) => {
                return Err(self.fail(
                    "publishing_region",
                    "is required for a regional_featured item",
                ));
            }
            (CatalogList::National | CatalogList::Annual, Some(_)) => {
                return Err(self.fail("publishing_region", "is only for regional_featured items"));
            }
            _ => {}
        }
        for (i, service) in self.services.iter().enumerate() {
            if service.name.trim().is_empty() {
                return Err(self.fail(format!("services[{i}].name"), "must not be empty"));
            }
            if service.department.trim().is_empty() {
                return Err(self.fail(format!("services[{i}].department"), "must not be empty"));
            }
        }
        Ok(())
    }

    /// Unique, valid material ids; names; a license type exactly for license
    /// materials; recognized license types only for license materials, including the
    /// material's own.
    fn check_materials(&self) -> Result<(), CatalogError> {
        let mut material_ids = HashSet::new();
        for material in &self.materials {
            let path = format!("materials.{}", material.id);
            check_id(&material.id).map_err(|p| self.fail("materials.id", p))?;
            if !material_ids.insert(material.id.as_str()) {
                return Err(self.fail(path, "material id appears more than once"));
            }
            if material.name.trim().is_empty() {
                return Err(self.fail(format!("{path}.name"), "must not be empty"));
            }
            match (material.kind, material.license_type.as_deref()) {
                (MaterialKind::License, None) => {
                    return Err(self.fail(
                        format!("{path}.license_type"),
                        "is required for a license material",
                    ));
                }
                (MaterialKind::License, Some(license_type)) => check_id(license_type)
                    .map_err(|p| self.fail(format!("{path}.license_type"), p))?,
                (MaterialKind::Upload, Some(_)) => {
                    return Err(self.fail(
                        format!("{path}.license_type"),
                        "is only for license materials",
                    ));
                }
                (MaterialKind::Upload, None) => {}
            }
            self.check_recognized_license_types(material, &path)?;
        }
        Ok(())
    }

    /// The license types a material recognizes (`path` names the material).
    fn check_recognized_license_types(
        &self,
        material: &Material,
        path: &str,
    ) -> Result<(), CatalogError> {
        if material.recognized_license_types.is_empty() {
            return Ok(());
        }
        let path = format!("{path}.recognized_license_types");
        if material.kind != MaterialKind::License {
            return Err(self.fail(path, "is only for license materials"));
        }
        for t in &material.recognized_license_types {
            check_id(t).map_err(|p| self.fail(path.clone(), p))?;
        }
        if let Some(own) = &material.license_type
            && !material.recognized_license_types.contains(own)
        {
            return Err(self.fail(
                path,
                format!("must include the material's own license_type {own:?}"),
            ));
        }
        Ok(())
    }

    /// Unique, valid field names; labels; options exactly for choice fields; prefills
    /// from a recognized license type; a maximum length only for text fields.
    fn check_form(&self) -> Result<(), CatalogError> {
        let mut field_names = HashSet::new();
        for field in &self.form {
            let path = format!("form.{}", field.name);
            check_id(&field.name).map_err(|p| self.fail("form.name", p))?;
            if !field_names.insert(field.name.as_str()) {
                return Err(self.fail(path, "field name appears more than once"));
            }
            if field.label.trim().is_empty() {
                return Err(self.fail(format!("{path}.label"), "must not be empty"));
            }
            self.check_options(field, &path)?;
            if let Some(prefill) = &field.prefill {
                self.check_prefill(prefill, &path)?;
            }
            self.check_max_length(field, &path)?;
        }
        Ok(())
    }

    /// A choice field has distinct, non-empty options; no other field has options.
    fn check_options(&self, field: &FormField, path: &str) -> Result<(), CatalogError> {
        if field.field_type != FieldType::Choice {
            if !field.options.is_empty() {
                return Err(self.fail(
                    format!("{path}.options"),
                    "options are only for choice fields",
                ));
            }
            return Ok(());
        }
        if field.options.is_empty() {
            return Err(self.fail(
                format!("{path}.options"),
                "a choice field needs at least one option",
            ));
        }
        let mut seen = HashSet::new();
        for option in &field.options {
            if option.trim().is_empty() {
                return Err(self.fail(format!("{path}.options"), "options must not be empty"));
            }
            if !seen.insert(option.as_str()) {
                return Err(self.fail(
                    format!("{path}.options"),
                    format!("option {option:?} appears more than once"),
                ));
            }
        }
        Ok(())
    }

    /// A prefill names a valid field of a license type some material recognizes.
    fn check_prefill(&self, prefill: &Prefill, path: &str) -> Result<(), CatalogError> {
        let path = format!("{path}.prefill");
        check_id(&prefill.field).map_err(|p| self.fail(format!("{path}.field"), p))?;
        if self
            .materials_recognizing(&prefill.license_type)
            .next()
            .is_none()
        {
            return Err(self.fail(
                format!("{path}.license_type"),
                format!(
                    "{:?} is not recognized for any material of this item",
                    prefill.license_type
                ),
            ));
        }
        Ok(())
    }

    /// A maximum length is at least 1 and only for text fields.
    fn check_max_length(&self, field: &FormField, path: &str) -> Result<(), CatalogError> {
        match (field.field_type, field.max_length) {
            (_, None) => Ok(()),
            (FieldType::Text, Some(0)) => Err(self.fail(
                format!("{path}.max_length"),
                "must be at least 1 (omit it for the default)",
            )),
            (FieldType::Text, Some(_)) => Ok(()),
            (_, Some(_)) => Err(self.fail(format!("{path}.max_length"), "is only for text fields")),
        }
    }

    /// A competent region taken from the form names a required `region_code` field.
    fn check_competent_region(&self) -> Result<(), CatalogError> {
        self.check_region_rule(&self.competent_region, "competent_region.field")
    }

    /// A rule taking the region from the form names a required `region_code` field.
    fn check_region_rule(&self, rule: &CompetentRegion, path: &str) -> Result<(), CatalogError> {
        let CompetentRegion::FormField { field } = rule else {
            return Ok(());
        };
        let problem = match self.form_field(field) {
            None => Some(format!("names {field:?}, which is not a field of the form")),
            Some(f) if f.field_type != FieldType::RegionCode => Some(format!(
                "names {field:?}, which has type {} instead of region_code",
                f.field_type.as_str()
            )),
            Some(f) if !f.required => Some(format!(
                "names {field:?}, which must be required to always yield a region"
            )),
            Some(_) => None,
        };
        match problem {
            Some(problem) => Err(self.fail(path, problem)),
            None => Ok(()),
        }
    }

    /// 多地联办: an item offering joint handling has at least two parts, and only such
    /// an item has parts; each part has a unique id, a name, a region rule that yields
    /// a region, a time limit of at least a day if it sets one, and waits only for
    /// earlier parts (so the order is the catalog's and can never loop).
    fn check_parts(&self) -> Result<(), CatalogError> {
        let joint = self.allows_mode(HandlingMode::Joint);
        match (joint, self.parts.len()) {
            (true, 0 | 1) => {
                return Err(self.fail(
                    "parts",
                    "an item offering joint handling needs at least two parts",
                ));
            }
            (false, n) if n > 0 => {
                return Err(self.fail("parts", "only an item offering joint handling has parts"));
            }
            _ => {}
        }
        for (i, part) in self.parts.iter().enumerate() {
            let path = format!("parts.{}", part.id);
            check_id(&part.id).map_err(|p| self.fail(format!("parts[{i}].id"), p))?;
            if self.parts[..i].iter().any(|p| p.id == part.id) {
                return Err(self.fail(format!("parts[{i}].id"), "appears more than once"));
            }
            if part.name.trim().is_empty() {
                return Err(self.fail(format!("{path}.name"), "must not be empty"));
            }
            self.check_region_rule(
                &part.competent_region,
                &format!("{path}.competent_region.field"),
            )?;
            if part.time_limit_working_days == Some(0) {
                return Err(self.fail(
                    format!("{path}.time_limit_working_days"),
                    "must be at least 1 (omit it for the item's)",
                ));
            }
            for earlier in &part.after {
                if !self.parts[..i].iter().any(|p| &p.id == earlier) {
                    return Err(self.fail(
                        format!("{path}.after"),
                        format!("names {earlier:?}, which is not an earlier part of the item"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A time limit of at least one working day, and distinct modes, at least one.
    fn check_time_limit_and_modes(&self) -> Result<(), CatalogError> {
        if self.time_limit_working_days == 0 {
            return Err(self.fail("time_limit_working_days", "must be at least 1"));
        }
        if self.modes.is_empty() {
            return Err(self.fail("modes", "at least one handling mode is required"));
        }
        let mut modes = HashSet::new();
        for mode in &self.modes {
            if !modes.insert(mode) {
                return Err(self.fail("modes", format!("{} appears more than once", mode.as_str())));
            }
        }
        Ok(())
    }
}

/// Checks ids, field names, material ids and license types: 1 to 64 ASCII letters,
/// digits, `-`, `_` or `.`, since they travel in gRPC metadata and error paths.
/// Whether `value` has the shape of a catalog id or version (what a caller may name
/// without it being escaped or quoted: a path segment, a setting).
pub fn is_catalog_id(value: &str) -> bool {
    check_id(value).is_ok()
}

fn check_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("must not be empty");
    }
    if id.len() > MAX_ID_LEN {
        return Err("must be at most 64 characters");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("may contain only ASCII letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

/// Checks the catalog version: what `check_id` allows, since it is copied into every
/// application.
fn check_version(version: &str) -> Result<(), CatalogError> {
    check_id(version).map_err(|problem| CatalogError::BadVersion {
        version: truncate_for_error(version, MAX_ID_LEN),
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::catalog::test_support::{catalog_json, item_error, minimal_item};

    /// Two parts: `out` by the form field `out_field`, `in` by the filing region after
    /// `out` (and `first_after` on `out`).
    fn joint_parts(out_field: &str, first_after: &[&str]) -> serde_json::Value {
        serde_json::json!([
            {"id": "out", "name": "迁出", "after": first_after,
             "competent_region": {"rule": "form_field", "field": out_field}},
            {"id": "in", "name": "迁入", "after": ["out"],
             "competent_region": {"rule": "filing_region"}},
        ])
    }

    #[test]
    fn from_json_rejects_inconsistent_items_naming_item_and_field() {
        type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|it| it["form"][1]["name"] = "region".into()),
                "catalog item \"demo\": form.region: field name appears more than once",
            ),
            (
                Box::new(|it| {
                    let m = it["materials"][0].clone();
                    it["materials"].as_array_mut().unwrap().push(m);
                }),
                "catalog item \"demo\": materials.id_card: material id appears more than once",
            ),
            (
                Box::new(|it| it["competent_region"]["field"] = "nowhere".into()),
                "catalog item \"demo\": competent_region.field: names \"nowhere\", which is not a field of the form",
            ),
            (
                Box::new(|it| it["form"][0]["type"] = "text".into()),
                "catalog item \"demo\": competent_region.field: names \"region\", which has type text instead of region_code",
            ),
            (
                Box::new(|it| it["form"][0]["required"] = false.into()),
                "catalog item \"demo\": competent_region.field: names \"region\", which must be required to always yield a region",
            ),
            (
                Box::new(|it| it["form"][1]["options"] = serde_json::json!([])),
                "catalog item \"demo\": form.kind.options: a choice field needs at least one option",
            ),
            (
                Box::new(|it| it["form"][0]["options"] = serde_json::json!(["a"])),
                "catalog item \"demo\": form.region.options: options are only for choice fields",
            ),
            (
                Box::new(|it| it["form"][0]["max_length"] = 5.into()),
                "catalog item \"demo\": form.region.max_length: is only for text fields",
            ),
            (
                Box::new(|it| it["time_limit_working_days"] = 0.into()),
                "catalog item \"demo\": time_limit_working_days: must be at least 1",
            ),
            (
                Box::new(|it| it["modes"] = serde_json::json!([])),
                "catalog item \"demo\": modes: at least one handling mode is required",
            ),
            (
                Box::new(|it| it["modes"] = serde_json::json!(["joint", "joint"])),
                "catalog item \"demo\": modes: joint appears more than once",
            ),
            (
                Box::new(|it| it["modes"] = serde_json::json!(["joint"])),
                "catalog item \"demo\": parts: an item offering joint handling needs at least two parts",
            ),
            (
                Box::new(|it| it["parts"] = joint_parts("region", &[])),
                "catalog item \"demo\": parts: only an item offering joint handling has parts",
            ),
            (
                Box::new(|it| {
                    it["modes"] = serde_json::json!(["joint"]);
                    it["parts"] = joint_parts("region", &["later"]);
                }),
                "catalog item \"demo\": parts.out.after: names \"later\", which is not an earlier part of the item",
            ),
            (
                Box::new(|it| {
                    it["modes"] = serde_json::json!(["joint"]);
                    it["parts"] = joint_parts("kind", &[]);
                }),
                "catalog item \"demo\": parts.out.competent_region.field: names \"kind\", which has type choice instead of region_code",
            ),
            (
                Box::new(|it| {
                    it["modes"] = serde_json::json!(["joint"]);
                    it["parts"] = joint_parts("region", &[]);
                    it["parts"][1]["id"] = "out".into();
                }),
                "catalog item \"demo\": parts[1].id: appears more than once",
            ),
            (
                Box::new(|it| {
                    it["modes"] = serde_json::json!(["joint"]);
                    it["parts"] = joint_parts("region", &[]);
                    it["parts"][1]["time_limit_working_days"] = 0.into();
                }),
                "catalog item \"demo\": parts.in.time_limit_working_days: must be at least 1 (omit it for the item's)",
            ),
            (
                Box::new(|it| {
                    it["materials"][0]
                        .as_object_mut()
                        .unwrap()
                        .remove("license_type");
                }),
                "catalog item \"demo\": materials.id_card.license_type: is required for a license material",
            ),
            (
                Box::new(|it| it["list"] = "regional_featured".into()),
                "catalog item \"demo\": publishing_region: is required for a regional_featured item",
            ),
            (
                Box::new(|it| it["publishing_region"] = "310000".into()),
                "catalog item \"demo\": publishing_region: is only for regional_featured items",
            ),
            (
                Box::new(|it| it["id"] = "demo item".into()),
                "catalog item \"demo item\": id: may contain only ASCII letters, digits, '-', '_' and '.'",
            ),
        ];
        for (mutate, expected) in cases {
            let mut it = minimal_item();
            mutate(&mut it);
            assert_eq!(item_error(it), expected);
        }

        let err = Catalog::from_json(&catalog_json(vec![minimal_item(), minimal_item()]))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "catalog item id \"demo\" appears more than once");

        let empty_version = serde_json::json!({ "version": "", "items": [] }).to_string();
        let err = Catalog::from_json(&empty_version).unwrap_err().to_string();
        assert_eq!(err, "catalog version \"\" is invalid: must not be empty");
    }
}
