//! The catalog's protobuf form (`GetCatalogResponse`): conversion both ways, with
//! unspecified or unknown enum values rejected, and the enum mappings to `v1`.

use super::consistency::MAX_ID_LEN;
use super::lists;
use super::model::{
    BundledService, Catalog, CatalogError, CatalogItem, CatalogList, CompetentRegion, FieldType,
    FormField, HandlingMode, JointPart, Material, MaterialKind, Prefill,
};
use crate::rules::region::{RegionCode, truncate_for_error};
use crate::v1;

/// The protobuf handling mode is `HANDLING_MODE_UNSPECIFIED` or unknown to this version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("handling mode {value} is unspecified or unknown")]
pub struct InvalidHandlingMode {
    /// The raw protobuf value.
    pub value: i32,
}

impl Catalog {
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
    /// The item as a protobuf message.
    pub fn to_proto(&self) -> v1::CatalogItem {
        let (rule, field) = rule_to_proto(&self.competent_region);
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
                    recognized_license_types: m.recognized_license_types.clone(),
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
                    prefill_license_type: f
                        .prefill
                        .as_ref()
                        .map(|p| p.license_type.clone())
                        .unwrap_or_default(),
                    prefill_license_field: f
                        .prefill
                        .as_ref()
                        .map(|p| p.field.clone())
                        .unwrap_or_default(),
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
            parts: self
                .parts
                .iter()
                .map(|part| {
                    let (rule, field) = rule_to_proto(&part.competent_region);
                    v1::JointPart {
                        id: part.id.clone(),
                        name: part.name.clone(),
                        competent_region: rule as i32,
                        competent_region_field: field,
                        after: part.after.clone(),
                        time_limit_working_days: part.time_limit_working_days.unwrap_or(0),
                    }
                })
                .collect(),
            annual: lists::annual_to_proto(&self.annual),
            adoptions: lists::adoptions_to_proto(&self.adoptions),
        }
    }

    /// Converts a protobuf item. Enum values must be specified and known; the result is
    /// not yet checked for consistency (see [`Catalog::validate`]).
    pub fn from_proto(item: &v1::CatalogItem) -> Result<CatalogItem, CatalogError> {
        let id = &item.id;
        // The id is not checked yet; keep error messages bounded.
        let label = truncate_for_error(id, MAX_ID_LEN);
        let list = list_from_proto(&label, item.list)?;
        let publishing_region = publishing_region_from_proto(&label, &item.publishing_region)?;
        let materials = item
            .materials
            .iter()
            .map(|m| material_from_proto(&label, m))
            .collect::<Result<_, _>>()?;
        let form = item
            .form
            .iter()
            .map(|f| form_field_from_proto(&label, f))
            .collect::<Result<_, _>>()?;
        let competent_region = competent_region_from_proto(
            &label,
            "competent_region",
            item.competent_region,
            &item.competent_region_field,
        )?;
        let parts = item
            .parts
            .iter()
            .map(|part| {
                let path = format!("parts.{}.competent_region", part.id);
                Ok(JointPart {
                    id: part.id.clone(),
                    name: part.name.clone(),
                    competent_region: competent_region_from_proto(
                        &label,
                        &path,
                        part.competent_region,
                        &part.competent_region_field,
                    )?,
                    after: part.after.clone(),
                    time_limit_working_days: (part.time_limit_working_days > 0)
                        .then_some(part.time_limit_working_days),
                })
            })
            .collect::<Result<_, CatalogError>>()?;
        let modes = item
            .modes
            .iter()
            .map(|&m| HandlingMode::try_from(m).map_err(|e| unknown_enum(&label, "modes", e.value)))
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
            parts,
            annual: lists::annual_from_proto(&label, &item.annual)?,
            adoptions: lists::adoptions_from_proto(&label, &item.adoptions)?,
        })
    }
}

/// The error for an unspecified or unknown enum `value` at `field` of item `label`.
fn unknown_enum(label: &str, field: impl Into<String>, value: i32) -> CatalogError {
    CatalogError::UnknownEnumValue {
        item: label.to_owned(),
        field: field.into(),
        value,
    }
}

fn list_from_proto(label: &str, list: i32) -> Result<CatalogList, CatalogError> {
    match v1::CatalogList::try_from(list) {
        Ok(v1::CatalogList::National) => Ok(CatalogList::National),
        Ok(v1::CatalogList::Annual) => Ok(CatalogList::Annual),
        Ok(v1::CatalogList::RegionalFeatured) => Ok(CatalogList::RegionalFeatured),
        Ok(v1::CatalogList::Unspecified) | Err(_) => Err(unknown_enum(label, "list", list)),
    }
}

/// An empty publishing region is none; any other must be a valid region code.
fn publishing_region_from_proto(
    label: &str,
    region: &str,
) -> Result<Option<RegionCode>, CatalogError> {
    if region.is_empty() {
        return Ok(None);
    }
    RegionCode::parse(region)
        .map(Some)
        .map_err(|e| CatalogError::Item {
            item: label.to_owned(),
            field: "publishing_region".into(),
            problem: e.to_string(),
        })
}

fn material_from_proto(label: &str, m: &v1::Material) -> Result<Material, CatalogError> {
    let kind = match v1::MaterialKind::try_from(m.kind) {
        Ok(v1::MaterialKind::License) => MaterialKind::License,
        Ok(v1::MaterialKind::Upload) => MaterialKind::Upload,
        Ok(v1::MaterialKind::Unspecified) | Err(_) => {
            return Err(unknown_enum(
                label,
                format!("materials.{}.kind", m.id),
                m.kind,
            ));
        }
    };
    Ok(Material {
        id: m.id.clone(),
        name: m.name.clone(),
        kind,
        license_type: non_empty(&m.license_type),
        required: m.required,
        recognized_license_types: m.recognized_license_types.clone(),
    })
}

fn form_field_from_proto(label: &str, f: &v1::FormField) -> Result<FormField, CatalogError> {
    let field_type = match v1::FieldType::try_from(f.r#type) {
        Ok(v1::FieldType::Text) => FieldType::Text,
        Ok(v1::FieldType::Date) => FieldType::Date,
        Ok(v1::FieldType::IdNumber) => FieldType::IdNumber,
        Ok(v1::FieldType::RegionCode) => FieldType::RegionCode,
        Ok(v1::FieldType::Choice) => FieldType::Choice,
        Ok(v1::FieldType::Phone) => FieldType::Phone,
        Ok(v1::FieldType::CreditCode) => FieldType::CreditCode,
        Ok(v1::FieldType::Unspecified) | Err(_) => {
            return Err(unknown_enum(
                label,
                format!("form.{}.type", f.name),
                f.r#type,
            ));
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
        prefill: match (
            non_empty(&f.prefill_license_type),
            non_empty(&f.prefill_license_field),
        ) {
            (None, None) => None,
            (license_type, field) => Some(Prefill {
                license_type: license_type.unwrap_or_default(),
                field: field.unwrap_or_default(),
            }),
        },
    })
}

/// A region rule as the protobuf carries it: the rule and its form field (if any).
fn rule_to_proto(rule: &CompetentRegion) -> (v1::CompetentRegionRule, String) {
    match rule {
        CompetentRegion::ApplicantHome => (v1::CompetentRegionRule::ApplicantHome, String::new()),
        CompetentRegion::FormField { field } => (v1::CompetentRegionRule::FormField, field.clone()),
        CompetentRegion::FilingRegion => (v1::CompetentRegionRule::FilingRegion, String::new()),
    }
}

/// A region rule (the item's, at `path`, or a part's); its field is set exactly for
/// the form-field rule.
fn competent_region_from_proto(
    label: &str,
    path: &str,
    rule: i32,
    field: &str,
) -> Result<CompetentRegion, CatalogError> {
    match v1::CompetentRegionRule::try_from(rule) {
        Ok(v1::CompetentRegionRule::FormField) => Ok(CompetentRegion::FormField {
            field: field.to_owned(),
        }),
        Ok(
            rule @ (v1::CompetentRegionRule::ApplicantHome | v1::CompetentRegionRule::FilingRegion),
        ) => {
            if !field.is_empty() {
                return Err(CatalogError::Item {
                    item: label.to_owned(),
                    field: format!("{path}_field"),
                    problem: "is set but the rule is not COMPETENT_REGION_RULE_FORM_FIELD".into(),
                });
            }
            if rule == v1::CompetentRegionRule::ApplicantHome {
                Ok(CompetentRegion::ApplicantHome)
            } else {
                Ok(CompetentRegion::FilingRegion)
            }
        }
        Ok(v1::CompetentRegionRule::Unspecified) | Err(_) => Err(unknown_enum(label, path, rule)),
    }
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
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

    use super::*;
    use crate::rules::catalog::test_support::item;

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
    fn joint_parts_travel_and_their_rules_are_checked() {
        let catalog = Catalog::embedded();
        let proto = catalog.to_proto();
        let back = Catalog::from_proto(&proto).unwrap();
        let transfer = back.item("household-transfer").unwrap();
        assert_eq!(
            transfer.parts,
            catalog.item("household-transfer").unwrap().parts
        );
        assert_eq!(transfer.parts[1].after, vec!["move_out".to_owned()]);
        let index = proto
            .items
            .iter()
            .position(|i| i.id == "household-transfer")
            .unwrap();
        let mut bad = proto.clone();
        bad.items[index].parts[0].competent_region = 0;
        let err = Catalog::from_proto(&bad).unwrap_err().to_string();
        assert!(err.contains("parts.move_out.competent_region"), "{err}");
        let mut bad = proto;
        bad.items[index].parts[1].after = vec!["move_in".into()];
        let err = Catalog::from_proto(&bad).unwrap_err().to_string();
        assert!(err.contains("parts.move_in.after"), "{err}");
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
}
