//! What many tests need the same: a valid filing, and the system tools some of them
//! drive.

use std::path::PathBuf;

use serde_json::{Value, json};
use tongban_node::platform::embedded::SyntheticResident;

/// The path of a system tool the suite needs (Prometheus, promtool, Chromium, the
/// reflection client's Python): found on `PATH` or in the system folders, else the test
/// fails saying how to install it. `scripts/test` installs them all first
/// (`scripts/test-tools`).
pub fn system_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: run scripts/test-tools (scripts/test runs it)")
        })
}

/// Shanghai's featured one-thing `id` (长三角异地就医直接结算一件事) as a region publishes
/// it, in the catalog's JSON form: the national medical-treatment registration's form
/// and materials, handled in the applicant's home region; `publisher` names the
/// publishing region, or leaves it to the caller's certificate.
pub fn featured_medical_item(id: &str, publisher: Option<&str>) -> Value {
    let catalog = tongban_proto::rules::catalog::Catalog::embedded();
    let Some(national) = catalog.item("medical-treatment-registration") else {
        return Value::Null;
    };
    let mut item = national.clone();
    item.id = id.into();
    item.name = "长三角异地就医直接结算一件事".into();
    item.list = tongban_proto::rules::catalog::CatalogList::RegionalFeatured;
    item.publishing_region = publisher.and_then(|p| p.parse().ok());
    serde_json::to_value(item).unwrap_or_default()
}

/// A valid medical-treatment registration filing for `resident`.
pub fn medical_filing(resident: &SyntheticResident) -> Value {
    json!({
        "one_thing_id": "medical-treatment-registration",
        "applicant": {"id_number": resident.id.as_str(), "name": resident.name, "phone": "13800138000"},
        "form": {
            "treatment_region": "310115", "hospital_name": "复旦大学附属中山医院",
            "start_date": "2026-12-01", "reason": "异地长期居住", "contact_phone": "13800138000"
        }
    })
}
