//! The catalog's JSON form (`catalog/national.json`): the vendored catalog, parsing
//! with unknown keys rejected, and errors that name the item they lie in.

use std::sync::OnceLock;

use serde::Deserialize;

use super::consistency::MAX_ID_LEN;
use super::model::{Catalog, CatalogError, CatalogItem};
use crate::rules::region::truncate_for_error;

/// The vendored national catalog.
const EMBEDDED_JSON: &str = include_str!("../../../../catalog/national.json");

impl Catalog {
    /// The catalog vendored in `catalog/national.json`, parsed and checked once.
    ///
    /// # Panics
    ///
    /// Panics if the vendored file is invalid. It is checked in and covered by this
    /// module's tests, so a panic means a broken build, not bad input; catalogs from
    /// elsewhere go through [`Catalog::from_json`] or [`Catalog::from_proto`].
    pub fn embedded() -> Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG
            .get_or_init(|| match Catalog::from_json(EMBEDDED_JSON) {
                Ok(catalog) => catalog,
                Err(err) => panic!("vendored catalog/national.json is invalid: {err}"),
            })
            .clone()
    }

    /// Parses a catalog from JSON (unknown keys are errors) and checks it with
    /// [`Catalog::validate`].
    pub fn from_json(json: &str) -> Result<Catalog, CatalogError> {
        let catalog: Catalog = match serde_json::from_str(json) {
            Ok(catalog) => catalog,
            Err(err) => return Err(locate_json_error(json, err)),
        };
        catalog.validate()?;
        Ok(catalog)
    }
}

/// Turns a whole-document deserialization error into one naming the item it lies in,
/// when it lies in an item.
fn locate_json_error(json: &str, err: serde_json::Error) -> CatalogError {
    #[derive(Deserialize)]
    struct Shape {
        #[serde(default)]
        items: Vec<serde_json::Value>,
    }
    // Re-read leniently and find the first item that fails on its own; serde reports the
    // first error in document order, so that item is where `err` lies.
    let Ok(shape) = serde_json::from_str::<Shape>(json) else {
        return CatalogError::Json(err);
    };
    for (i, value) in shape.items.into_iter().enumerate() {
        let label = match value.get("id").and_then(serde_json::Value::as_str) {
            Some(id) if !id.is_empty() => truncate_for_error(id, MAX_ID_LEN),
            _ => format!("#{}", i + 1),
        };
        if serde_json::from_value::<CatalogItem>(value).is_err() {
            return CatalogError::ItemJson {
                item: label,
                source: err,
            };
        }
    }
    CatalogError::Json(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::catalog::model::{CatalogList, CompetentRegion};
    use crate::rules::catalog::test_support::{catalog_json, code, item_error, minimal_item};

    #[test]
    fn embedded_catalog_loads_and_validates() {
        let catalog = Catalog::embedded();
        assert_eq!(catalog.version, "2026.12-3");
        catalog.validate().unwrap();
        for id in [
            "newborn-birth",
            "business-startup",
            "medical-treatment-registration",
            "household-transfer",
            "social-insurance-transfer",
            "retirement",
            "sh-foreigner-work",
        ] {
            let item = catalog.item(id).unwrap_or_else(|| panic!("missing {id}"));
            assert!(!item.services.is_empty(), "{id}");
            assert!(!item.form.is_empty(), "{id}");
        }
        assert!(catalog.item("no-such-thing").is_none());
        let featured = catalog.item("sh-foreigner-work").unwrap();
        assert_eq!(featured.list, CatalogList::RegionalFeatured);
        assert_eq!(featured.publishing_region, Some(code("310000")));
        assert_eq!(
            catalog.item("business-startup").unwrap().competent_region,
            CompetentRegion::FormField {
                field: "business_region".into()
            }
        );
        // The vendored file's text parses to the same value as the cached copy.
        assert_eq!(Catalog::from_json(EMBEDDED_JSON).unwrap(), catalog);
    }

    #[test]
    fn json_round_trip() {
        let catalog = Catalog::embedded();
        let json = serde_json::to_string_pretty(&catalog).unwrap();
        assert_eq!(Catalog::from_json(&json).unwrap(), catalog);
    }

    #[test]
    fn from_json_accepts_the_minimal_item() {
        let catalog = Catalog::from_json(&catalog_json(vec![minimal_item()])).unwrap();
        assert_eq!(catalog.items.len(), 1);
        assert_eq!(catalog.items[0].publishing_region, None);
        assert_eq!(catalog.items[0].form[0].max_length, None);
    }

    #[test]
    fn from_json_rejects_unknown_keys_naming_the_item() {
        let mut it = minimal_item();
        it["colour"] = "blue".into();
        let err = item_error(it);
        assert!(
            err.starts_with("catalog item \"demo\" does not match"),
            "{err}"
        );
        assert!(err.contains("unknown field `colour`"), "{err}");

        let mut it = minimal_item();
        it["form"][0]["hint"] = "x".into();
        let err = item_error(it);
        assert!(
            err.contains("\"demo\"") && err.contains("unknown field `hint`"),
            "{err}"
        );

        let mut it = minimal_item();
        it["competent_region"]["extra"] = 1.into();
        let err = item_error(it);
        assert!(err.contains("\"demo\"") && err.contains("extra"), "{err}");

        let mut it = minimal_item();
        it["competent_region"] = serde_json::json!({ "rule": "applicant_home", "field": "x" });
        let err = item_error(it);
        assert!(
            err.contains("\"demo\"") && err.contains("only for rule form_field"),
            "{err}"
        );

        let mut it = minimal_item();
        it["competent_region"] = serde_json::json!({ "rule": "form_field" });
        let err = item_error(it);
        assert!(
            err.contains("\"demo\"") && err.contains("needs `field`"),
            "{err}"
        );

        let mut it = minimal_item();
        it["list"] = "provincial".into();
        let err = item_error(it);
        assert!(
            err.contains("\"demo\"") && err.contains("provincial"),
            "{err}"
        );

        let mut it = minimal_item();
        it.as_object_mut().unwrap().remove("id");
        it["modes"] = serde_json::json!(["by_post"]);
        let err = item_error(it);
        assert!(err.starts_with("catalog item \"#1\""), "{err}");

        let top = serde_json::json!({ "version": "1", "items": [], "owner": "x" }).to_string();
        let err = Catalog::from_json(&top).unwrap_err();
        assert!(matches!(err, CatalogError::Json(_)), "{err}");
        assert!(err.to_string().contains("unknown field `owner`"), "{err}");

        let err = Catalog::from_json("{\"version\": ").unwrap_err();
        assert!(matches!(err, CatalogError::Json(_)), "{err}");
    }
}
