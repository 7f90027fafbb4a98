//! The national one-thing catalog (一件事目录): its domain types, their JSON form
//! (`catalog/national.json`) and protobuf form (`GetCatalogResponse`), the consistency
//! rules every catalog must satisfy, and what nodes compute from an item: form
//! pre-review (智能预审), the competent region, the promised date and missing materials.
//!
//! Gateway and nodes run the same code here, so an application pre-reviewed at one node
//! gets the same verdict at any other (无差别受理).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use time::{Date, Duration, Weekday};

use crate::region::{RegionCode, RegionTable, truncate_for_error};
use crate::resident_id::ResidentId;
use crate::v1;

/// The vendored national catalog.
const EMBEDDED_JSON: &str = include_str!("../../catalog/national.json");

/// Maximum length of a text field when the catalog sets none.
pub const DEFAULT_TEXT_MAX_LENGTH: u32 = 200;

/// Maximum length of ids (item ids, field names, material ids) and the version string.
const MAX_ID_LEN: usize = 64;

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

/// The protobuf handling mode is `HANDLING_MODE_UNSPECIFIED` or unknown to this version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("handling mode {value} is unspecified or unknown")]
pub struct InvalidHandlingMode {
    /// The raw protobuf value.
    pub value: i32,
}

/// A problem with one form field, found by pre-review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field name (as submitted, for unknown fields).
    pub field: String,
    /// What is wrong. Never contains a submitted ID number.
    pub problem: String,
}

impl FieldError {
    fn new(field: &str, problem: impl Into<String>) -> FieldError {
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

    /// The item with this id.
    pub fn item(&self, id: &str) -> Option<&CatalogItem> {
        self.items.iter().find(|item| item.id == id)
    }

    /// The catalog as a full `GetCatalogResponse` (`not_modified` false).
    pub fn to_proto(&self) -> v1::GetCatalogResponse {
        v1::GetCatalogResponse {
            version: self.version.clone(),
            not_modified: false,
            items: self.items.iter().map(CatalogItem::to_proto).collect(),
        }
    }

    /// Converts a full `GetCatalogResponse` and checks it with [`Catalog::validate`].
    /// Unspecified or unknown enum values are errors naming the item and field; a
    /// response with `not_modified` set is an error because it carries no items.
    pub fn from_proto(response: &v1::GetCatalogResponse) -> Result<Catalog, CatalogError> {
        if response.not_modified {
            return Err(CatalogError::NotModified {
                version: truncate_for_error(&response.version, MAX_ID_LEN),
            });
        }
        let catalog = Catalog {
            version: response.version.clone(),
            items: response
                .items
                .iter()
                .map(CatalogItem::from_proto)
                .collect::<Result<_, _>>()?,
        };
        catalog.validate()?;
        Ok(catalog)
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
        for name in unknown {
            // The key is caller-controlled: shorten it so a pasted value cannot leak whole.
            errors.push(FieldError::new(
                &truncate_for_error(name, 32),
                "unknown field for this one-thing",
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(FormErrors(errors))
        }
    }

    /// The region competent for an application: the applicant's home region, the region
    /// named by the item's competent-region form field, or the filing region. A missing
    /// or malformed competent-region field is an error naming that field; whether the
    /// code exists is [`validate_form`](Self::validate_form)'s job.
    pub fn competent_region(
        &self,
        applicant_home: &RegionCode,
        form: &BTreeMap<String, String>,
        filing_region: &RegionCode,
    ) -> Result<RegionCode, FieldError> {
        match &self.competent_region {
            CompetentRegion::ApplicantHome => Ok(*applicant_home),
            CompetentRegion::FilingRegion => Ok(*filing_region),
            CompetentRegion::FormField { field } => match form.get(field) {
                Some(value) if !value.trim().is_empty() => {
                    RegionCode::parse(value).map_err(|_| FieldError::new(field, REGION_CODE_SHAPE))
                }
                _ => Err(FieldError::new(
                    field,
                    "required field is missing; it names the competent region",
                )),
            },
        }
    }

    /// The promised completion date: `time_limit_working_days` working days after
    /// `filed_on`, counting only days strictly after it. Working days are Monday to
    /// Friday; public holidays and their make-up working days (调休) are not modelled.
    /// Filed on a Friday or a Saturday with one day, the promise is the next Monday.
    /// Saturates at [`Date::MAX`].
    pub fn promised_date(&self, filed_on: Date) -> Date {
        let days = self.time_limit_working_days;
        if days == 0 {
            return filed_on;
        }
        // Any 7 consecutive days hold exactly 5 working days, so skip whole weeks first
        // and walk the remaining 1..=5 working days one day at a time.
        let weeks = (days - 1) / 5;
        let mut remaining = days - weeks * 5;
        let Some(mut date) = filed_on.checked_add(Duration::weeks(i64::from(weeks))) else {
            return Date::MAX;
        };
        while remaining > 0 {
            let Some(next) = date.next_day() else {
                return Date::MAX;
            };
            date = next;
            if !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday) {
                remaining -= 1;
            }
        }
        date
    }

    /// Required materials whose id is not among `provided`, in catalog order.
    pub fn missing_materials<'a>(&'a self, provided: &[v1::MaterialRef]) -> Vec<&'a Material> {
        self.materials
            .iter()
            .filter(|m| m.required && !provided.iter().any(|p| p.material_id == m.id))
            .collect()
    }

    /// Whether the item may be handled in `mode`.
    pub fn allows_mode(&self, mode: HandlingMode) -> bool {
        self.modes.contains(&mode)
    }

    /// The item as a protobuf message.
    pub fn to_proto(&self) -> v1::CatalogItem {
        let (rule, field) = match &self.competent_region {
            CompetentRegion::ApplicantHome => {
                (v1::CompetentRegionRule::ApplicantHome, String::new())
            }
            CompetentRegion::FormField { field } => {
                (v1::CompetentRegionRule::FormField, field.clone())
            }
            CompetentRegion::FilingRegion => (v1::CompetentRegionRule::FilingRegion, String::new()),
        };
        v1::CatalogItem {
            id: self.id.clone(),
            name: self.name.clone(),
            list: v1::CatalogList::from(self.list) as i32,
            publishing_region: self
                .publishing_region
                .map(|code| code.as_str().to_owned())
                .unwrap_or_default(),
            description: self.description.clone(),
            services: self
                .services
                .iter()
                .map(|s| v1::BundledService {
                    name: s.name.clone(),
                    department: s.department.clone(),
                })
                .collect(),
            materials: self
                .materials
                .iter()
                .map(|m| v1::Material {
                    id: m.id.clone(),
                    name: m.name.clone(),
                    kind: v1::MaterialKind::from(m.kind) as i32,
                    license_type: m.license_type.clone().unwrap_or_default(),
                    required: m.required,
                })
                .collect(),
            form: self
                .form
                .iter()
                .map(|f| v1::FormField {
                    name: f.name.clone(),
                    label: f.label.clone(),
                    r#type: v1::FieldType::from(f.field_type) as i32,
                    required: f.required,
                    options: f.options.clone(),
                    max_length: f.max_length.unwrap_or(0),
                })
                .collect(),
            time_limit_working_days: self.time_limit_working_days,
            competent_region: rule as i32,
            competent_region_field: field,
            modes: self
                .modes
                .iter()
                .map(|&m| v1::HandlingMode::from(m) as i32)
                .collect(),
        }
    }

    /// Converts a protobuf item. Enum values must be specified and known; the result is
    /// not yet checked for consistency (see [`Catalog::validate`]).
    fn from_proto(item: &v1::CatalogItem) -> Result<CatalogItem, CatalogError> {
        let id = &item.id;
        // The id is not checked yet; keep error messages bounded.
        let label = truncate_for_error(id, MAX_ID_LEN);
        let enum_error = |field: String, value: i32| CatalogError::UnknownEnumValue {
            item: label.clone(),
            field,
            value,
        };
        let list = match v1::CatalogList::try_from(item.list) {
            Ok(v1::CatalogList::National) => CatalogList::National,
            Ok(v1::CatalogList::Annual) => CatalogList::Annual,
            Ok(v1::CatalogList::RegionalFeatured) => CatalogList::RegionalFeatured,
            Ok(v1::CatalogList::Unspecified) | Err(_) => {
                return Err(enum_error("list".into(), item.list));
            }
        };
        let publishing_region = if item.publishing_region.is_empty() {
            None
        } else {
            Some(
                RegionCode::parse(&item.publishing_region).map_err(|e| CatalogError::Item {
                    item: label.clone(),
                    field: "publishing_region".into(),
                    problem: e.to_string(),
                })?,
            )
        };
        let materials = item
            .materials
            .iter()
            .map(|m| {
                let kind = match v1::MaterialKind::try_from(m.kind) {
                    Ok(v1::MaterialKind::License) => MaterialKind::License,
                    Ok(v1::MaterialKind::Upload) => MaterialKind::Upload,
                    Ok(v1::MaterialKind::Unspecified) | Err(_) => {
                        return Err(enum_error(format!("materials.{}.kind", m.id), m.kind));
                    }
                };
                Ok(Material {
                    id: m.id.clone(),
                    name: m.name.clone(),
                    kind,
                    license_type: non_empty(&m.license_type),
                    required: m.required,
                })
            })
            .collect::<Result<_, _>>()?;
        let form = item
            .form
            .iter()
            .map(|f| {
                let field_type = match v1::FieldType::try_from(f.r#type) {
                    Ok(v1::FieldType::Text) => FieldType::Text,
                    Ok(v1::FieldType::Date) => FieldType::Date,
                    Ok(v1::FieldType::IdNumber) => FieldType::IdNumber,
                    Ok(v1::FieldType::RegionCode) => FieldType::RegionCode,
                    Ok(v1::FieldType::Choice) => FieldType::Choice,
                    Ok(v1::FieldType::Phone) => FieldType::Phone,
                    Ok(v1::FieldType::CreditCode) => FieldType::CreditCode,
                    Ok(v1::FieldType::Unspecified) | Err(_) => {
                        return Err(enum_error(format!("form.{}.type", f.name), f.r#type));
                    }
                };
                Ok(FormField {
                    name: f.name.clone(),
                    label: f.label.clone(),
                    field_type,
                    required: f.required,
                    options: f.options.clone(),
                    // 0 is the protobuf default and means "use the default maximum".
                    max_length: (f.max_length != 0).then_some(f.max_length),
                })
            })
            .collect::<Result<_, _>>()?;
        let competent_region = match v1::CompetentRegionRule::try_from(item.competent_region) {
            Ok(v1::CompetentRegionRule::FormField) => CompetentRegion::FormField {
                field: item.competent_region_field.clone(),
            },
            Ok(
                rule @ (v1::CompetentRegionRule::ApplicantHome
                | v1::CompetentRegionRule::FilingRegion),
            ) => {
                if !item.competent_region_field.is_empty() {
                    return Err(CatalogError::Item {
                        item: label.clone(),
                        field: "competent_region_field".into(),
                        problem: "is set but the rule is not COMPETENT_REGION_RULE_FORM_FIELD"
                            .into(),
                    });
                }
                if rule == v1::CompetentRegionRule::ApplicantHome {
                    CompetentRegion::ApplicantHome
                } else {
                    CompetentRegion::FilingRegion
                }
            }
            Ok(v1::CompetentRegionRule::Unspecified) | Err(_) => {
                return Err(enum_error("competent_region".into(), item.competent_region));
            }
        };
        let modes = item
            .modes
            .iter()
            .map(|&m| HandlingMode::try_from(m).map_err(|e| enum_error("modes".into(), e.value)))
            .collect::<Result<_, _>>()?;
        Ok(CatalogItem {
            id: id.clone(),
            name: item.name.clone(),
            list,
            publishing_region,
            description: item.description.clone(),
            services: item
                .services
                .iter()
                .map(|s| BundledService {
                    name: s.name.clone(),
                    department: s.department.clone(),
                })
                .collect(),
            materials,
            form,
            time_limit_working_days: item.time_limit_working_days,
            competent_region,
            modes,
        })
    }

    /// Checks this item's consistency rules (see [`Catalog::validate`]).
    fn validate(&self) -> Result<(), CatalogError> {
        let fail = |field: String, problem: String| CatalogError::Item {
            item: truncate_for_error(&self.id, MAX_ID_LEN),
            field,
            problem,
        };
        check_id(&self.id).map_err(|p| fail("id".into(), p.into()))?;
        if self.name.trim().is_empty() {
            return Err(fail("name".into(), "must not be empty".into()));
        }
        match (self.list, &self.publishing_region) {
            (CatalogList::RegionalFeatured, None) => {
                return Err(fail(
                    "publishing_region".into(),
                    "is required for a regional_featured item".into(),
                ));
            }
            (CatalogList::National | CatalogList::Annual, Some(_)) => {
                return Err(fail(
                    "publishing_region".into(),
                    "is only for regional_featured items".into(),
                ));
            }
            _ => {}
        }
        for (i, service) in self.services.iter().enumerate() {
            if service.name.trim().is_empty() {
                return Err(fail(
                    format!("services[{i}].name"),
                    "must not be empty".into(),
                ));
            }
            if service.department.trim().is_empty() {
                return Err(fail(
                    format!("services[{i}].department"),
                    "must not be empty".into(),
                ));
            }
        }

        let mut material_ids = HashSet::new();
        for material in &self.materials {
            let path = format!("materials.{}", material.id);
            check_id(&material.id).map_err(|p| fail("materials.id".into(), p.into()))?;
            if !material_ids.insert(material.id.as_str()) {
                return Err(fail(path, "material id appears more than once".into()));
            }
            if material.name.trim().is_empty() {
                return Err(fail(format!("{path}.name"), "must not be empty".into()));
            }
            match (material.kind, material.license_type.as_deref()) {
                (MaterialKind::License, None) => {
                    return Err(fail(
                        format!("{path}.license_type"),
                        "is required for a license material".into(),
                    ));
                }
                (MaterialKind::License, Some(license_type)) => check_id(license_type)
                    .map_err(|p| fail(format!("{path}.license_type"), p.into()))?,
                (MaterialKind::Upload, Some(_)) => {
                    return Err(fail(
                        format!("{path}.license_type"),
                        "is only for license materials".into(),
                    ));
                }
                (MaterialKind::Upload, None) => {}
            }
        }

        let mut field_names = HashSet::new();
        for field in &self.form {
            let path = format!("form.{}", field.name);
            check_id(&field.name).map_err(|p| fail("form.name".into(), p.into()))?;
            if !field_names.insert(field.name.as_str()) {
                return Err(fail(path, "field name appears more than once".into()));
            }
            if field.label.trim().is_empty() {
                return Err(fail(format!("{path}.label"), "must not be empty".into()));
            }
            if field.field_type == FieldType::Choice {
                if field.options.is_empty() {
                    return Err(fail(
                        format!("{path}.options"),
                        "a choice field needs at least one option".into(),
                    ));
                }
                let mut seen = HashSet::new();
                for option in &field.options {
                    if option.trim().is_empty() {
                        return Err(fail(
                            format!("{path}.options"),
                            "options must not be empty".into(),
                        ));
                    }
                    if !seen.insert(option.as_str()) {
                        return Err(fail(
                            format!("{path}.options"),
                            format!("option {option:?} appears more than once"),
                        ));
                    }
                }
            } else if !field.options.is_empty() {
                return Err(fail(
                    format!("{path}.options"),
                    "options are only for choice fields".into(),
                ));
            }
            match (field.field_type, field.max_length) {
                (_, None) => {}
                (FieldType::Text, Some(0)) => {
                    return Err(fail(
                        format!("{path}.max_length"),
                        "must be at least 1 (omit it for the default)".into(),
                    ));
                }
                (FieldType::Text, Some(_)) => {}
                (_, Some(_)) => {
                    return Err(fail(
                        format!("{path}.max_length"),
                        "is only for text fields".into(),
                    ));
                }
            }
        }

        if let CompetentRegion::FormField { field } = &self.competent_region {
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
            if let Some(problem) = problem {
                return Err(fail("competent_region.field".into(), problem));
            }
        }

        if self.time_limit_working_days == 0 {
            return Err(fail(
                "time_limit_working_days".into(),
                "must be at least 1".into(),
            ));
        }
        if self.modes.is_empty() {
            return Err(fail(
                "modes".into(),
                "at least one handling mode is required".into(),
            ));
        }
        let mut modes = HashSet::new();
        for mode in &self.modes {
            if !modes.insert(mode) {
                return Err(fail(
                    "modes".into(),
                    format!("{} appears more than once", mode.as_str()),
                ));
            }
        }
        Ok(())
    }
}

impl FormField {
    /// Checks a non-blank submitted value against the field's type.
    fn check_value(&self, value: &str, table: &RegionTable, today: Date) -> Result<(), String> {
        match self.field_type {
            FieldType::Text => {
                let max = self.max_length.unwrap_or(DEFAULT_TEXT_MAX_LENGTH);
                let len = value.chars().count();
                if len > max as usize {
                    return Err(format!("is {len} characters long; at most {max} allowed"));
                }
                if value.chars().any(char::is_control) {
                    return Err("must not contain control characters".into());
                }
                Ok(())
            }
            FieldType::Date => check_date(value),
            FieldType::IdNumber => ResidentId::parse(value, table, today)
                .map(|_| ())
                // IdError messages never contain the number.
                .map_err(|e| e.to_string()),
            FieldType::RegionCode => {
                let code = RegionCode::parse(value).map_err(|_| REGION_CODE_SHAPE.to_owned())?;
                if table.is_known(&code) {
                    Ok(())
                } else {
                    Err(format!("region code {code} is not a known division"))
                }
            }
            FieldType::Choice => {
                if self.options.iter().any(|option| option == value) {
                    Ok(())
                } else {
                    Err(format!("must be one of: {}", self.options.join(", ")))
                }
            }
            FieldType::Phone => {
                let ok = value.len() == 11
                    && value.starts_with('1')
                    && value.bytes().all(|b| b.is_ascii_digit());
                if ok {
                    Ok(())
                } else {
                    Err("expected an 11-digit mainland mobile number starting with 1".into())
                }
            }
            FieldType::CreditCode => check_credit_code(value),
        }
    }
}

/// Problem text for a value that is not shaped like a region code; never echoes it.
const REGION_CODE_SHAPE: &str = "expected a 6-digit GB/T 2260 region code";

/// Checks a `YYYY-MM-DD` date.
fn check_date(value: &str) -> Result<(), String> {
    let bytes = value.as_bytes();
    let shaped = bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shaped {
        return Err("expected a date as YYYY-MM-DD".into());
    }
    let number = |range: std::ops::Range<usize>| {
        bytes[range]
            .iter()
            .fold(0u16, |acc, b| acc * 10 + u16::from(b - b'0'))
    };
    let real = time::Month::try_from(number(5..7) as u8)
        .ok()
        .and_then(|month| {
            Date::from_calendar_date(i32::from(number(0..4)), month, number(8..10) as u8).ok()
        });
    match real {
        Some(_) => Ok(()),
        None => Err("is not a real calendar date".into()),
    }
}

/// The GB 32100 character set, in value order (no I, O, Z, S, V).
const CREDIT_CODE_CHARSET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// GB 32100 weights of the first 17 characters.
const CREDIT_CODE_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// Checks an 18-character unified social credit code, including its mod-31 check
/// character (GB 32100-2015).
fn check_credit_code(value: &str) -> Result<(), String> {
    if value.chars().count() != 18 {
        return Err("expected an 18-character unified social credit code".into());
    }
    let mut values = [0u32; 18];
    for (slot, b) in values.iter_mut().zip(value.bytes()) {
        let Some(v) = CREDIT_CODE_CHARSET.iter().position(|&c| c == b) else {
            return Err(
                "a unified social credit code has only digits and upper-case letters other \
                 than I, O, Z, S and V"
                    .into(),
            );
        };
        // `v` is below 31.
        *slot = v as u32;
    }
    let sum: u32 = values
        .iter()
        .zip(CREDIT_CODE_WEIGHTS)
        .map(|(v, w)| v * w)
        .sum();
    let expected = (31 - sum % 31) % 31;
    if values[17] == expected {
        Ok(())
    } else {
        Err("unified social credit code has a bad check character".into())
    }
}

/// Checks ids, field names, material ids and license types: 1 to 64 ASCII letters,
/// digits, `-`, `_` or `.`, since they travel in gRPC metadata and error paths.
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

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
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

impl From<HandlingMode> for v1::HandlingMode {
    fn from(mode: HandlingMode) -> Self {
        match mode {
            HandlingMode::FullyOnline => v1::HandlingMode::FullyOnline,
            HandlingMode::ProxyAcceptance => v1::HandlingMode::ProxyAcceptance,
            HandlingMode::Joint => v1::HandlingMode::Joint,
        }
    }
}

impl TryFrom<v1::HandlingMode> for HandlingMode {
    type Error = InvalidHandlingMode;

    fn try_from(mode: v1::HandlingMode) -> Result<Self, Self::Error> {
        match mode {
            v1::HandlingMode::FullyOnline => Ok(HandlingMode::FullyOnline),
            v1::HandlingMode::ProxyAcceptance => Ok(HandlingMode::ProxyAcceptance),
            v1::HandlingMode::Joint => Ok(HandlingMode::Joint),
            v1::HandlingMode::Unspecified => Err(InvalidHandlingMode { value: mode as i32 }),
        }
    }
}

impl TryFrom<i32> for HandlingMode {
    type Error = InvalidHandlingMode;

    /// Converts the raw value of a protobuf `HandlingMode` field, e.g. `Application.mode`.
    fn try_from(value: i32) -> Result<Self, Self::Error> {
        v1::HandlingMode::try_from(value)
            .map_err(|_| InvalidHandlingMode { value })
            .and_then(HandlingMode::try_from)
    }
}

impl From<CatalogList> for v1::CatalogList {
    fn from(list: CatalogList) -> Self {
        match list {
            CatalogList::National => v1::CatalogList::National,
            CatalogList::Annual => v1::CatalogList::Annual,
            CatalogList::RegionalFeatured => v1::CatalogList::RegionalFeatured,
        }
    }
}

impl From<MaterialKind> for v1::MaterialKind {
    fn from(kind: MaterialKind) -> Self {
        match kind {
            MaterialKind::License => v1::MaterialKind::License,
            MaterialKind::Upload => v1::MaterialKind::Upload,
        }
    }
}

impl From<FieldType> for v1::FieldType {
    fn from(field_type: FieldType) -> Self {
        match field_type {
            FieldType::Text => v1::FieldType::Text,
            FieldType::Date => v1::FieldType::Date,
            FieldType::IdNumber => v1::FieldType::IdNumber,
            FieldType::RegionCode => v1::FieldType::RegionCode,
            FieldType::Choice => v1::FieldType::Choice,
            FieldType::Phone => v1::FieldType::Phone,
            FieldType::CreditCode => v1::FieldType::CreditCode,
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use time::macros::date;

    use super::*;

    const TODAY: Date = date!(2026 - 11 - 26);

    fn code(s: &str) -> RegionCode {
        RegionCode::parse(s).unwrap()
    }

    fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn item(id: &str) -> CatalogItem {
        Catalog::embedded().item(id).unwrap().clone()
    }

    fn newborn_form() -> BTreeMap<String, String> {
        form(&[
            ("child_name", "张小明"),
            ("child_sex", "男"),
            ("child_birth_date", "2026-11-20"),
            ("birth_place", "440305"),
            ("mother_id_number", "44030519900101908X"),
            ("contact_phone", "13800138000"),
        ])
    }

    fn validate(item: &CatalogItem, form: &BTreeMap<String, String>) -> Result<(), FormErrors> {
        item.validate_form(form, RegionTable::embedded(), TODAY)
    }

    /// A minimal valid catalog document with one item, for breaking on purpose.
    fn minimal_item() -> serde_json::Value {
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

    fn catalog_json(items: Vec<serde_json::Value>) -> String {
        serde_json::json!({ "version": "t-1", "items": items }).to_string()
    }

    fn item_error(item: serde_json::Value) -> String {
        Catalog::from_json(&catalog_json(vec![item]))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn embedded_catalog_loads_and_validates() {
        let catalog = Catalog::embedded();
        assert_eq!(catalog.version, "2026.11-1");
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
    fn proto_round_trip_including_wire_bytes() {
        let catalog = Catalog::embedded();
        let proto = catalog.to_proto();
        assert!(!proto.not_modified);
        assert_eq!(proto.items.len(), catalog.items.len());
        assert_eq!(Catalog::from_proto(&proto).unwrap(), catalog);
        let decoded = v1::GetCatalogResponse::decode(proto.encode_to_vec().as_slice()).unwrap();
        assert_eq!(Catalog::from_proto(&decoded).unwrap(), catalog);

        let startup = proto
            .items
            .iter()
            .find(|i| i.id == "business-startup")
            .unwrap();
        assert_eq!(startup.competent_region_field, "business_region");
        assert_eq!(
            startup.competent_region,
            v1::CompetentRegionRule::FormField as i32
        );
    }

    #[test]
    fn from_proto_rejects_unspecified_and_unknown_enums() {
        let base = Catalog::embedded().to_proto();
        let check = |mutate: &dyn Fn(&mut v1::CatalogItem), field: &str, value: i32| {
            let mut proto = base.clone();
            mutate(&mut proto.items[0]);
            let err = Catalog::from_proto(&proto).unwrap_err();
            match &err {
                CatalogError::UnknownEnumValue {
                    item,
                    field: f,
                    value: v,
                } => {
                    assert_eq!(
                        (item.as_str(), f.as_str(), *v),
                        ("newborn-birth", field, value)
                    );
                }
                other => panic!("unexpected {other:?}"),
            }
            assert!(err.to_string().contains("newborn-birth"), "{err}");
        };
        check(&|i| i.list = 0, "list", 0);
        check(&|i| i.list = 42, "list", 42);
        check(&|i| i.competent_region = 0, "competent_region", 0);
        check(&|i| i.modes.push(0), "modes", 0);
        check(&|i| i.modes[0] = 9, "modes", 9);
        check(&|i| i.form[1].r#type = 0, "form.child_sex.type", 0);
        check(
            &|i| i.materials[0].kind = 7,
            "materials.birth_medical_certificate.kind",
            7,
        );
    }

    #[test]
    fn from_proto_runs_consistency_checks() {
        let mut proto = Catalog::embedded().to_proto();
        proto.items[0].competent_region_field = "birth_place".into();
        let err = Catalog::from_proto(&proto).unwrap_err().to_string();
        assert!(err.contains("competent_region_field"), "{err}");

        let mut proto = Catalog::embedded().to_proto();
        proto.items[0].time_limit_working_days = 0;
        let err = Catalog::from_proto(&proto).unwrap_err().to_string();
        assert_eq!(
            err,
            "catalog item \"newborn-birth\": time_limit_working_days: must be at least 1"
        );

        let mut proto = Catalog::embedded().to_proto();
        proto.items[1].publishing_region = "44030".into();
        let err = Catalog::from_proto(&proto).unwrap_err().to_string();
        assert!(
            err.contains("\"business-startup\": publishing_region"),
            "{err}"
        );

        let mut proto = Catalog::embedded().to_proto();
        proto.not_modified = true;
        proto.items.clear();
        assert!(matches!(
            Catalog::from_proto(&proto),
            Err(CatalogError::NotModified { .. })
        ));
    }

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
    fn validate_form_type_checks() {
        let newborn = item("newborn-birth");
        let problem = |field: &str, value: &str| {
            let mut f = newborn_form();
            f.insert(field.into(), value.into());
            match validate(&newborn, &f) {
                Ok(()) => None,
                Err(errors) => {
                    assert_eq!(errors.0.len(), 1, "{errors}");
                    assert_eq!(errors.0[0].field, field);
                    Some(errors.0[0].problem.clone())
                }
            }
        };
        let expect = |field: &str, value: &str, needle: &str| {
            let p = problem(field, value).unwrap_or_else(|| panic!("{field}={value:?} passed"));
            assert!(p.contains(needle), "{field}={value:?}: {p}");
        };
        expect("child_birth_date", "2026/11/20", "YYYY-MM-DD");
        expect("child_birth_date", "20261120", "YYYY-MM-DD");
        expect("child_birth_date", "2026-13-01", "not a real calendar date");
        expect("child_birth_date", "2025-02-29", "not a real calendar date");
        assert_eq!(problem("child_birth_date", "2024-02-29"), None);
        expect(
            "birth_place",
            "4403",
            "expected a 6-digit GB/T 2260 region code",
        );
        expect("birth_place", "44030519900101908X", "expected a 6-digit");
        expect("birth_place", "500105", "not a known division");
        expect("contact_phone", "1380013800", "11-digit");
        expect("contact_phone", "23800138000", "starting with 1");
        expect("contact_phone", "1380013800a", "11-digit");
        expect(
            "child_name",
            &"名".repeat(21),
            "21 characters long; at most 20",
        );
        assert_eq!(problem("child_name", &"名".repeat(20)), None);
        expect("child_name", "张\u{7}三", "control characters");
        expect("mother_id_number", "11010520990101921X", "in the future");
        expect(
            "mother_id_number",
            "990101199001019224",
            "unknown province prefix 99",
        );
    }

    #[test]
    fn text_fields_default_to_200_characters() {
        let field = FormField {
            name: "note".into(),
            label: "备注".into(),
            field_type: FieldType::Text,
            required: false,
            options: vec![],
            max_length: None,
        };
        let table = RegionTable::embedded();
        assert!(field.check_value(&"字".repeat(200), table, TODAY).is_ok());
        assert!(field.check_value(&"字".repeat(201), table, TODAY).is_err());
    }

    #[test]
    fn credit_codes() {
        for good in [
            "914403001922038216",
            "9144030071526726XG",
            "91110000100010433L",
        ] {
            assert_eq!(check_credit_code(good), Ok(()), "{good}");
        }
        let bad_check = check_credit_code("914403001922038217").unwrap_err();
        assert!(bad_check.contains("bad check character"), "{bad_check}");
        let bad_char = check_credit_code("91440300192203821I").unwrap_err();
        assert!(bad_char.contains("I, O, Z, S and V"), "{bad_char}");
        let lower = check_credit_code("9144030071526726xg").unwrap_err();
        assert!(lower.contains("upper-case"), "{lower}");
        let short = check_credit_code("91440300192203821").unwrap_err();
        assert!(short.contains("18-character"), "{short}");
        let wide = check_credit_code("９14403001922038216").unwrap_err();
        assert!(wide.contains("only digits"), "{wide}");
    }

    #[test]
    fn competent_region_for_each_rule() {
        let home = code("110105");
        let filing = code("310115");
        let newborn = item("newborn-birth");
        assert_eq!(
            newborn.competent_region(&home, &newborn_form(), &filing),
            Ok(home)
        );
        let featured = item("sh-foreigner-work");
        assert_eq!(
            featured.competent_region(&home, &form(&[]), &filing),
            Ok(filing)
        );

        let transfer = item("household-transfer");
        let f = form(&[("move_from_region", "110105"), ("move_to_region", "440305")]);
        assert_eq!(
            transfer.competent_region(&home, &f, &filing),
            Ok(code("440305"))
        );
        let missing = transfer
            .competent_region(&home, &form(&[("move_to_region", " ")]), &filing)
            .unwrap_err();
        assert_eq!(missing.field, "move_to_region");
        assert!(
            missing
                .to_string()
                .starts_with("form.move_to_region: required field is missing")
        );
        let malformed = transfer
            .competent_region(&home, &form(&[("move_to_region", "44a305")]), &filing)
            .unwrap_err();
        assert_eq!(
            malformed.to_string(),
            "form.move_to_region: expected a 6-digit GB/T 2260 region code"
        );
    }

    #[test]
    fn promised_date_counts_working_days_after_filing() {
        let mut item = item("medical-treatment-registration");
        let with_days = |item: &mut CatalogItem, days: u32, filed: Date| {
            item.time_limit_working_days = days;
            item.promised_date(filed)
        };
        // 2026-11-27 is a Friday.
        assert_eq!(date!(2026 - 11 - 27).weekday(), Weekday::Friday);
        assert_eq!(
            with_days(&mut item, 1, date!(2026 - 11 - 26)),
            date!(2026 - 11 - 27)
        );
        assert_eq!(
            with_days(&mut item, 1, date!(2026 - 11 - 27)),
            date!(2026 - 11 - 30)
        );
        assert_eq!(
            with_days(&mut item, 1, date!(2026 - 11 - 28)),
            date!(2026 - 11 - 30)
        );
        assert_eq!(
            with_days(&mut item, 1, date!(2026 - 11 - 29)),
            date!(2026 - 11 - 30)
        );
        assert_eq!(
            with_days(&mut item, 5, date!(2026 - 11 - 30)),
            date!(2026 - 12 - 07)
        );
        assert_eq!(
            with_days(&mut item, 5, date!(2026 - 11 - 28)),
            date!(2026 - 12 - 04)
        );
        assert_eq!(
            with_days(&mut item, 6, date!(2026 - 11 - 28)),
            date!(2026 - 12 - 07)
        );
        assert_eq!(
            with_days(&mut item, 10, date!(2026 - 11 - 25)),
            date!(2026 - 12 - 09)
        );
        assert_eq!(
            with_days(&mut item, 45, date!(2026 - 11 - 27)),
            date!(2027 - 01 - 29)
        );
        assert_eq!(
            with_days(&mut item, 0, date!(2026 - 11 - 28)),
            date!(2026 - 11 - 28)
        );
        assert_eq!(
            with_days(&mut item, u32::MAX, date!(2026 - 11 - 28)),
            Date::MAX
        );
        assert_eq!(with_days(&mut item, 3, Date::MAX), Date::MAX);

        // The whole-week shortcut agrees with walking day by day.
        let mut filed = date!(2026 - 11 - 23);
        for _ in 0..7 {
            for days in 1..=23 {
                let mut walked = filed;
                let mut left = days;
                while left > 0 {
                    walked = walked.next_day().unwrap();
                    if !matches!(walked.weekday(), Weekday::Saturday | Weekday::Sunday) {
                        left -= 1;
                    }
                }
                assert_eq!(
                    with_days(&mut item, days, filed),
                    walked,
                    "{filed} + {days}"
                );
            }
            filed = filed.next_day().unwrap();
        }
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

    #[test]
    fn handling_modes_and_conversions() {
        let transfer = item("household-transfer");
        assert!(transfer.allows_mode(HandlingMode::Joint));
        assert!(!transfer.allows_mode(HandlingMode::FullyOnline));
        for mode in [
            HandlingMode::FullyOnline,
            HandlingMode::ProxyAcceptance,
            HandlingMode::Joint,
        ] {
            let proto = v1::HandlingMode::from(mode);
            assert_eq!(HandlingMode::try_from(proto), Ok(mode));
            assert_eq!(HandlingMode::try_from(proto as i32), Ok(mode));
        }
        assert_eq!(
            HandlingMode::try_from(v1::HandlingMode::Unspecified),
            Err(InvalidHandlingMode { value: 0 })
        );
        assert_eq!(
            HandlingMode::try_from(17),
            Err(InvalidHandlingMode { value: 17 })
        );
        assert_eq!(
            HandlingMode::ProxyAcceptance.to_string(),
            "proxy_acceptance"
        );
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
