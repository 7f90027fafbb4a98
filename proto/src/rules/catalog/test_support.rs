//! Fixtures shared by the catalog's unit tests: the embedded items, a known-good form
//! and a minimal catalog document to break on purpose.

use std::collections::BTreeMap;

use time::Date;
use time::macros::date;

use super::model::{Catalog, CatalogItem};
use super::prereview::FormErrors;
use crate::rules::region::{RegionCode, RegionTable};

pub(super) const TODAY: Date = date!(2026 - 11 - 26);

pub(super) fn code(s: &str) -> RegionCode {
    RegionCode::parse(s).unwrap()
}

pub(super) fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn item(id: &str) -> CatalogItem {
    Catalog::embedded().item(id).unwrap().clone()
}

pub(super) fn newborn_form() -> BTreeMap<String, String> {
    form(&[
        ("child_name", "张小明"),
        ("child_sex", "男"),
        ("child_birth_date", "2026-11-20"),
        ("birth_place", "440305"),
        ("mother_id_number", "44030519900101908X"),
        ("contact_phone", "13800138000"),
    ])
}

pub(super) fn validate(
    item: &CatalogItem,
    form: &BTreeMap<String, String>,
) -> Result<(), FormErrors> {
    item.validate_form(form, RegionTable::embedded(), TODAY)
}

/// A minimal valid catalog document with one item, for breaking on purpose.
pub(super) fn minimal_item() -> serde_json::Value {
    serde_json::json!({
        "id": "demo",
        "name": "演示一件事",
        "list": "national",
        "description": "",
        "services": [{ "name": "登记", "department": "公安局" }],
        "materials": [
            { "id": "id_card", "name": "居民身份证", "kind": "license",
              "license_type": "resident_id_card", "required": true }
        ],
        "form": [
            { "name": "region", "label": "地区", "type": "region_code", "required": true },
            { "name": "kind", "label": "类型", "type": "choice", "required": false,
              "options": ["甲", "乙"] }
        ],
        "time_limit_working_days": 3,
        "competent_region": { "rule": "form_field", "field": "region" },
        "modes": ["fully_online"]
    })
}

pub(super) fn catalog_json(items: Vec<serde_json::Value>) -> String {
    serde_json::json!({ "version": "t-1", "items": items }).to_string()
}

pub(super) fn item_error(item: serde_json::Value) -> String {
    Catalog::from_json(&catalog_json(vec![item]))
        .unwrap_err()
        .to_string()
}
