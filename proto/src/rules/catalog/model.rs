//! The catalog's domain types and their trivial accessors. How a catalog is read
//! (`json`, `wire`), checked (`consistency`) and what nodes compute from an item
//! (`prereview`, `fields`, `competent`) live in the sibling modules.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::Date;

use crate::rules::calendar::{schedule::CalendarError, working_days::RegionCalendar};
use crate::rules::region::RegionCode;

/// Maximum length of a text field when the catalog sets none.
pub const DEFAULT_TEXT_MAX_LENGTH: u32 = 200;

/// Errors from loading, converting or checking a catalog. Messages name the item and
/// the field concerned.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The JSON is malformed or does not match the catalog schema outside any item.
    #[error("catalog JSON is invalid: {0}")]
    Json(#[source] serde_json::Error),
    /// One item of the JSON does not match the item schema (unknown key, wrong type...).
    #[error("catalog item {item:?} does not match the item schema: {source}")]
    ItemJson {
        /// The item's id, or `#<n>` (1-based position) when it has no usable id.
        item: String,
        /// The deserialization error, with its line and column in the whole document.
        #[source]
        source: serde_json::Error,
    },
    /// The catalog version is unusable.
    #[error("catalog version {version:?} is invalid: {problem}")]
    BadVersion {
        /// The version as found (truncated to 64 characters).
        version: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Two items share an id.
    #[error("catalog item id {id:?} appears more than once")]
    DuplicateItem {
        /// The repeated id.
        id: String,
    },
    /// An item breaks a consistency rule.
    #[error("catalog item {item:?}: {field}: {problem}")]
    Item {
        /// The item's id.
        item: String,
        /// Path of the offending field within the item, e.g. `form.child_sex.options`.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// A protobuf enum field holds `*_UNSPECIFIED` or a value this version does not know.
    #[error("catalog item {item:?}: {field}: enum value {value} is unspecified or unknown")]
    UnknownEnumValue {
        /// The item's id.
        item: String,
        /// Path of the enum field within the item, e.g. `materials.birth_certificate.kind`.
        field: String,
        /// The raw value received.
        value: i32,
    },
    /// A `GetCatalogResponse` with `not_modified` set carries no items to convert.
    #[error(
        "GetCatalogResponse for version {version:?} has not_modified set and carries no \
         items; keep the cached catalog"
    )]
    NotModified {
        /// The version the response names.
        version: String,
    },
}

/// A versioned catalog of one-things.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Catalog version, e.g. `2026.11-1`; applications record the version they were
    /// validated against.
    pub version: String,
    /// The one-things, in publication order.
    pub items: Vec<CatalogItem>,
}

/// One one-thing (一件事): the services it bundles, its materials, its one form (一表),
/// its time limit and how regions share the work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogItem {
    /// Stable id, e.g. `newborn-birth`; travels in the `tongban-one-thing` metadata.
    pub id: String,
    /// Chinese name, e.g. `新生儿出生一件事`.
    pub name: String,
    /// Which list the item belongs to.
    pub list: CatalogList,
    /// For [`CatalogList::RegionalFeatured`]: the region that published it.
    #[serde(default)]
    pub publishing_region: Option<RegionCode>,
    /// What the one-thing covers, for citizens and clerks.
    pub description: String,
    /// The services and departments bundled.
    pub services: Vec<BundledService>,
    /// Materials an application needs.
    pub materials: Vec<Material>,
    /// The one form's fields.
    pub form: Vec<FormField>,
    /// Promised completion, in working days (Monday to Friday) after filing.
    pub time_limit_working_days: u32,
    /// Which region is competent for an application.
    pub competent_region: CompetentRegion,
    /// The 跨省通办 modes this item may be handled in.
    pub modes: Vec<HandlingMode>,
    /// 多地联办: the parts a joint filing is split into, each handled by its own
    /// competent region, in order. Exactly the items offering [`HandlingMode::Joint`]
    /// have at least two.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<JointPart>,
    /// For [`CatalogList::Annual`]: the year's list and the date by which every region
    /// offers the item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annual: Option<AnnualListing>,
    /// For [`CatalogList::RegionalFeatured`]: the regions that adopted it, in order.
    /// The gateway's catalog ledger writes these; a catalog file may start with some.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adoptions: Vec<Adoption>,
}

/// An item's place in a year's list (年度清单).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnualListing {
    /// The list's year.
    pub year: u16,
    /// `YYYY-MM-DD`: every region offers the item from this date at the latest.
    pub available_everywhere_by: String,
}

/// A region that adopted another's featured one-thing (全国复用).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adoption {
    /// The adopting region (a province's or a delegated city's code).
    pub region: RegionCode,
    /// `YYYY-MM-DD`, Beijing time.
    pub adopted_on: String,
}

/// One part of a jointly handled one-thing, e.g. the transfer out of a household
/// register (handled where the applicant moves from) before the transfer in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JointPart {
    /// Unique within the item; travels in `Application.part_id`.
    pub id: String,
    /// Chinese name, e.g. `户口迁出`.
    pub name: String,
    /// Which region handles this part.
    pub competent_region: CompetentRegion,
    /// Earlier parts that must be approved before this one starts (a transfer in
    /// waits for the transfer out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// The part's own time limit, in working days after it starts; the item's when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit_working_days: Option<u32>,
}

/// The list an item is published in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatalogList {
    /// National overall list (国家层面重点事项清单).
    National,
    /// This year's list (年度清单).
    Annual,
    /// A region's featured one-thing offered for adoption (一地创新、全国复用).
    RegionalFeatured,
}

/// A service (permit, registration, certificate) bundled into a one-thing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundledService {
    /// The service, e.g. `出生医学证明签发`.
    pub name: String,
    /// The department responsible, e.g. `卫生健康委`.
    pub department: String,
}

/// A material an application needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Material {
    /// Id, unique within the item; applications reference it in `MaterialRef`.
    pub id: String,
    /// Chinese name.
    pub name: String,
    /// Whether it can be fetched as an electronic license or must be uploaded.
    pub kind: MaterialKind,
    /// For [`MaterialKind::License`]: the license type code, e.g. `household_register`.
    #[serde(default)]
    pub license_type: Option<String>,
    /// Whether an application is incomplete without it.
    pub required: bool,
    /// The mutual-recognition catalog for this material: every license type, from any
    /// region, accepted in place of it. Empty means just `license_type`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recognized_license_types: Vec<String>,
}

impl Material {
    /// Whether a license of `license_type` stands in for this material.
    pub fn recognizes(&self, license_type: &str) -> bool {
        if self.recognized_license_types.is_empty() {
            self.license_type.as_deref() == Some(license_type)
        } else {
            self.recognized_license_types
                .iter()
                .any(|t| t == license_type)
        }
    }
}

/// Where a material comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaterialKind {
    /// An electronic license (电子证照) fetched from its issuer instead of submitted.
    License,
    /// A file the applicant uploads.
    Upload,
}

/// One field of the one form (一表申请).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormField {
    /// Field name, unique within the item; the key in the submitted form.
    pub name: String,
    /// Chinese label shown to the applicant.
    pub label: String,
    /// Value type, checked by [`CatalogItem::validate_form`].
    #[serde(rename = "type")]
    pub field_type: FieldType,
    /// Whether the field must be filled in.
    pub required: bool,
    /// For [`FieldType::Choice`]: the allowed values.
    #[serde(default)]
    pub options: Vec<String>,
    /// For [`FieldType::Text`]: maximum length in characters (default
    /// [`DEFAULT_TEXT_MAX_LENGTH`]).
    #[serde(default)]
    pub max_length: Option<u32>,
    /// 无感申报: filled in from a recognized license when the applicant leaves it empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefill: Option<Prefill>,
}

/// Where a form field's value can come from instead of the applicant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prefill {
    /// A license type one of the item's materials recognizes.
    pub license_type: String,
    /// The name of the license's field that states the value.
    pub field: String,
}

/// The type of a form field's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// Free text without control characters, up to the field's maximum length.
    Text,
    /// `YYYY-MM-DD`, a real calendar date.
    Date,
    /// A GB 11643 resident ID number.
    IdNumber,
    /// A 6-digit GB/T 2260 code of a known division.
    RegionCode,
    /// One of the field's options.
    Choice,
    /// A mainland mobile number: 11 digits starting with 1.
    Phone,
    /// An 18-character unified social credit code (GB 32100).
    CreditCode,
}

/// The 跨省通办 handling modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandlingMode {
    /// 全程网办: filed online and forwarded; the citizen never visits.
    FullyOnline,
    /// 异地代收代办: accepted at a local window on the competent region's behalf.
    ProxyAcceptance,
    /// 多地联办: one window accepts, several regions each handle their part.
    Joint,
}

/// Which region is competent (handles the case) for an item's applications.
///
/// In JSON: `{"rule": "applicant_home"}`, `{"rule": "form_field", "field": "..."}` or
/// `{"rule": "filing_region"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
// serde's internally tagged unit variants ignore extra keys, so deserialization goes
// through a strict helper instead.
#[serde(
    tag = "rule",
    rename_all = "snake_case",
    try_from = "CompetentRegionJson"
)]
pub enum CompetentRegion {
    /// The applicant's home region, from their resident ID number.
    ApplicantHome,
    /// The region named by a `region_code` form field.
    FormField {
        /// Name of the required `region_code` field.
        field: String,
    },
    /// The region where the application was filed.
    FilingRegion,
}

/// The JSON shape of [`CompetentRegion`], checked strictly.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompetentRegionJson {
    rule: CompetentRuleJson,
    #[serde(default)]
    field: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum CompetentRuleJson {
    ApplicantHome,
    FormField,
    FilingRegion,
}

impl TryFrom<CompetentRegionJson> for CompetentRegion {
    type Error = &'static str;

    fn try_from(json: CompetentRegionJson) -> Result<Self, Self::Error> {
        match (json.rule, json.field) {
            (CompetentRuleJson::FormField, Some(field)) => Ok(CompetentRegion::FormField { field }),
            (CompetentRuleJson::FormField, None) => {
                Err("competent_region: rule form_field needs `field`")
            }
            (_, Some(_)) => Err("competent_region: `field` is only for rule form_field"),
            (CompetentRuleJson::ApplicantHome, None) => Ok(CompetentRegion::ApplicantHome),
            (CompetentRuleJson::FilingRegion, None) => Ok(CompetentRegion::FilingRegion),
        }
    }
}

impl Catalog {
    /// The item with this id.
    pub fn item(&self, id: &str) -> Option<&CatalogItem> {
        self.items.iter().find(|item| item.id == id)
    }
}

impl CatalogItem {
    /// The form field with this name.
    pub fn form_field(&self, name: &str) -> Option<&FormField> {
        self.form.iter().find(|field| field.name == name)
    }

    /// The material with this id.
    pub fn material(&self, id: &str) -> Option<&Material> {
        self.materials.iter().find(|material| material.id == id)
    }

    /// The promised completion date: `time_limit_working_days` working days after
    /// `filed_on` in the handling region's official calendar, counting only days
    /// strictly after it (filed on a Friday with one day, the promise is the next working
    /// day). A year on the way without an official schedule is an error.
    pub fn promised_date(
        &self,
        filed_on: Date,
        calendar: &RegionCalendar<'_>,
    ) -> Result<Date, CalendarError> {
        calendar.add_working_days(filed_on, self.time_limit_working_days)
    }

    /// The part with this id.
    pub fn part(&self, id: &str) -> Option<&JointPart> {
        self.parts.iter().find(|part| part.id == id)
    }

    /// The materials a license of `license_type` stands in for (the mutual-recognition
    /// catalog, identical for every region).
    pub fn materials_recognizing<'a>(
        &'a self,
        license_type: &'a str,
    ) -> impl Iterator<Item = &'a Material> + 'a {
        self.materials
            .iter()
            .filter(move |m| m.kind == MaterialKind::License && m.recognizes(license_type))
    }

    /// Whether the item may be handled in `mode`.
    pub fn allows_mode(&self, mode: HandlingMode) -> bool {
        self.modes.contains(&mode)
    }

    /// Whether `region` offers the item (accepts and handles it): every region offers
    /// the national and annual lists' items; a featured item is offered by the region
    /// that published it and the regions that adopted it (a province's adoption covers
    /// its delegated cities).
    pub fn offered_in(&self, region: &RegionCode) -> bool {
        if self.list != CatalogList::RegionalFeatured {
            return true;
        }
        self.offering_regions()
            .any(|offering| offering.to_prefix().contains(region))
    }

    /// The regions that offer a featured item: its publisher, then its adopters.
    pub fn offering_regions(&self) -> impl Iterator<Item = &RegionCode> {
        self.publishing_region
            .iter()
            .chain(self.adoptions.iter().map(|a| &a.region))
    }
}

impl FieldType {
    /// The JSON name, e.g. `region_code`.
    pub fn as_str(&self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Date => "date",
            FieldType::IdNumber => "id_number",
            FieldType::RegionCode => "region_code",
            FieldType::Choice => "choice",
            FieldType::Phone => "phone",
            FieldType::CreditCode => "credit_code",
        }
    }
}

impl HandlingMode {
    /// The JSON name, e.g. `proxy_acceptance`.
    pub fn as_str(&self) -> &'static str {
        match self {
            HandlingMode::FullyOnline => "fully_online",
            HandlingMode::ProxyAcceptance => "proxy_acceptance",
            HandlingMode::Joint => "joint",
        }
    }
}

impl fmt::Display for HandlingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use time::Weekday;
    use time::macros::date;

    use super::*;
    use crate::rules::catalog::test_support::item;

    #[test]
    fn promised_date_counts_working_days_after_filing() {
        let mut item = item("medical-treatment-registration");
        let calendar = crate::rules::calendar::working_days::Calendar::built_in().unwrap();
        let beijing = calendar.for_region("110000");
        let with_days = |item: &mut CatalogItem, days: u32, filed: Date| {
            item.time_limit_working_days = days;
            item.promised_date(filed, &beijing)
        };
        // 2026-11-27 is a Friday: one day is the next Monday, from Saturday and Sunday too.
        assert_eq!(date!(2026 - 11 - 27).weekday(), Weekday::Friday);
        assert_eq!(
            with_days(&mut item, 1, date!(2026 - 11 - 26)),
            Ok(date!(2026 - 11 - 27))
        );
        assert_eq!(
            with_days(&mut item, 1, date!(2026 - 11 - 27)),
            Ok(date!(2026 - 11 - 30))
        );
        assert_eq!(
            with_days(&mut item, 1, date!(2026 - 11 - 29)),
            Ok(date!(2026 - 11 - 30))
        );
        assert_eq!(
            with_days(&mut item, 5, date!(2026 - 11 - 30)),
            Ok(date!(2026 - 12 - 07))
        );
        assert_eq!(
            with_days(&mut item, 0, date!(2026 - 11 - 28)),
            Ok(date!(2026 - 11 - 28))
        );
        // Across the 2026 Spring Festival: Saturday 02-14 worked, 02-15 to 02-23 off.
        assert_eq!(
            with_days(&mut item, 3, date!(2026 - 02 - 13)),
            Ok(date!(2026 - 02 - 25))
        );
        // A limit reaching past the last official schedule is an error, not a guess.
        assert!(with_days(&mut item, 20, date!(2026 - 12 - 15)).is_err());
        assert!(with_days(&mut item, u32::MAX, date!(2026 - 11 - 28)).is_err());
        assert!(with_days(&mut item, 3, Date::MAX).is_err());
    }
}
