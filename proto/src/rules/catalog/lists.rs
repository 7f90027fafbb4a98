//! The three lists (总体清单、年度清单、特色清单) and their changes: an annual item's year
//! and deadline, a featured item's publisher and adopters, the rules a published or
//! adopted item must satisfy, and their protobuf form. The gateway's catalog ledger
//! applies publications and adoptions through [`Catalog::with_publication`] and
//! [`Catalog::with_adoption`]; nodes decide whether they offer an item with
//! [`CatalogItem::offered_in`].

use std::collections::BTreeSet;

use super::fields::check_date;
use super::model::{Adoption, AnnualListing, Catalog, CatalogError, CatalogItem, CatalogList};
use crate::rules::region::{RegionCode, RegionPrefix};
use crate::v1;

/// The largest item a region publishes, encoded (the national items take about 3 KiB):
/// every node keeps every version of the catalog.
pub const MAX_PUBLISHED_ITEM_BYTES: usize = 64 * 1024;

/// The most featured items one region may have in the catalog.
pub const MAX_FEATURED_PER_REGION: usize = 100;

/// Why a publication or an adoption is refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeRefused {
    /// The change would make an inconsistent catalog (names the item and the field).
    #[error(transparent)]
    Invalid(#[from] CatalogError),
    /// The id names an item this region did not publish.
    #[error("catalog item {item:?} belongs to {owner}; a region publishes only its own items")]
    NotYours {
        item: String,
        /// `region 310000` or `the national list`.
        owner: String,
    },
    /// No item has this id.
    #[error("no one-thing {item:?} in catalog {version}")]
    Unknown { item: String, version: String },
}

impl CatalogItem {
    /// The listing rules: an annual item names its year and deadline, and only it; only
    /// a featured item has adopters, each once, none within its publisher.
    pub(super) fn check_listing(&self) -> Result<(), CatalogError> {
        match (self.list, &self.annual) {
            (CatalogList::Annual, None) => {
                return Err(self.fail("annual", "is required for an annual item"));
            }
            (CatalogList::National | CatalogList::RegionalFeatured, Some(_)) => {
                return Err(self.fail("annual", "is only for annual items"));
            }
            (_, Some(annual)) => {
                if !(2000..=2100).contains(&annual.year) {
                    return Err(self.fail("annual.year", "must be between 2000 and 2100"));
                }
                check_date(&annual.available_everywhere_by)
                    .map_err(|p| self.fail("annual.available_everywhere_by", p))?;
                let deadline_year = annual.available_everywhere_by.get(..4);
                let in_reach = [annual.year, annual.year.saturating_add(1)]
                    .map(|y| y.to_string())
                    .iter()
                    .any(|y| Some(y.as_str()) == deadline_year);
                if !in_reach {
                    return Err(self.fail(
                        "annual.available_everywhere_by",
                        "must fall in the list's year or the next",
                    ));
                }
            }
            _ => {}
        }
        if !self.adoptions.is_empty() && self.list != CatalogList::RegionalFeatured {
            return Err(self.fail("adoptions", "are only for regional_featured items"));
        }
        let mut seen = BTreeSet::new();
        for adoption in &self.adoptions {
            let field = format!("adoptions.{}", adoption.region);
            check_date(&adoption.adopted_on).map_err(|p| self.fail(&field, p))?;
            let within_publisher = self
                .publishing_region
                .is_some_and(|p| p.to_prefix().contains(&adoption.region));
            if within_publisher {
                return Err(self.fail(field, "lies within the publishing region"));
            }
            if !seen.insert(adoption.region) {
                return Err(self.fail(field, "adopted twice"));
            }
        }
        Ok(())
    }
}

impl Catalog {
    /// The catalog, as `version`, with `item` published by `publisher`: a new featured
    /// item, or a new version of one `publisher` published (its adoptions kept). `None`
    /// when the catalog carries exactly this publication already.
    ///
    /// The item is a regional featured item; its publishing region is the caller's
    /// (filled in when left empty); it has no adoptions yet; its license types are the
    /// federation's (named by the catalog already: the issuers' registers, the sharing
    /// responsibility list and the verdict metrics cover exactly those); and the whole
    /// catalog stays consistent.
    pub fn with_publication(
        &self,
        publisher: &RegionPrefix,
        mut item: CatalogItem,
        version: String,
    ) -> Result<Option<Catalog>, ChangeRefused> {
        let publisher = RegionCode::from_prefix(publisher);
        if item.list != CatalogList::RegionalFeatured {
            return Err(item
                .fail("list", "a region publishes only regional_featured items")
                .into());
        }
        match item.publishing_region {
            Some(named) if named != publisher => {
                return Err(item
                    .fail(
                        "publishing_region",
                        format!("is {named}, but the caller is region {publisher}"),
                    )
                    .into());
            }
            _ => item.publishing_region = Some(publisher),
        }
        if !item.adoptions.is_empty() {
            return Err(item
                .fail("adoptions", "are recorded as regions adopt the item")
                .into());
        }
        let size = prost::Message::encoded_len(&item.to_proto());
        if size > MAX_PUBLISHED_ITEM_BYTES {
            return Err(item
                .fail(
                    "item",
                    format!("is {size} bytes encoded; at most {MAX_PUBLISHED_ITEM_BYTES}"),
                )
                .into());
        }
        let existing = self.items.iter().position(|i| i.id == item.id);
        let published_here = self
            .items
            .iter()
            .filter(|i| i.list == CatalogList::RegionalFeatured)
            .filter(|i| i.publishing_region == Some(publisher))
            .count();
        if existing.is_none() && published_here >= MAX_FEATURED_PER_REGION {
            return Err(item
                .fail(
                    "id",
                    format!(
                        "region {publisher} has {published_here} featured items, the most one \
                         region may have"
                    ),
                )
                .into());
        }
        if let Some(at) = existing {
            let current = &self.items[at];
            if current.list != CatalogList::RegionalFeatured
                || current.publishing_region != Some(publisher)
            {
                return Err(ChangeRefused::NotYours {
                    item: item.id,
                    owner: owner(current),
                });
            }
            item.adoptions = current.adoptions.clone();
            if *current == item {
                return Ok(None);
            }
        }
        self.check_license_types(&item)?;
        check_text(&item)?;
        let mut items = self.items.clone();
        match existing {
            Some(at) => items[at] = item,
            None => items.push(item),
        }
        changed(version, items)
    }

    /// The catalog, as `version`, with the featured item `item_id` adopted by `adopter`
    /// on `adopted_on` (`YYYY-MM-DD`). `None` when `adopter` offers it already (it
    /// published or adopted it, or its province did).
    pub fn with_adoption(
        &self,
        adopter: &RegionPrefix,
        item_id: &str,
        adopted_on: &str,
        version: String,
    ) -> Result<Option<Catalog>, ChangeRefused> {
        let Some(at) = self.items.iter().position(|i| i.id == item_id) else {
            return Err(ChangeRefused::Unknown {
                item: item_id.to_owned(),
                version: self.version.clone(),
            });
        };
        let item = &self.items[at];
        if item.list != CatalogList::RegionalFeatured {
            return Err(item
                .fail("list", "is not a featured item: every region offers it")
                .into());
        }
        let region = RegionCode::from_prefix(adopter);
        if item.offered_in(&region) {
            return Ok(None);
        }
        let mut items = self.items.clone();
        items[at].adoptions.push(Adoption {
            region,
            adopted_on: adopted_on.to_owned(),
        });
        changed(version, items)
    }

    /// Every license type the catalog's other items name stands ready for `item`.
    fn check_license_types(&self, item: &CatalogItem) -> Result<(), CatalogError> {
        let known: BTreeSet<&str> = self
            .items
            .iter()
            .filter(|other| other.id != item.id)
            .flat_map(license_types)
            .collect();
        for material in &item.materials {
            let named = material
                .license_type
                .iter()
                .chain(&material.recognized_license_types);
            for license_type in named {
                if !known.contains(license_type.as_str()) {
                    return Err(item.fail(
                        format!("materials.{}.license_type", material.id),
                        format!(
                            "{license_type:?} is no license type of the federation's catalog \
                             {}",
                            self.version
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A region's item is shown to citizens and clerks everywhere: its text holds no
/// control or bidirectional formatting characters (one could make a name display as
/// another), as any text a person typed.
fn check_text(item: &CatalogItem) -> Result<(), CatalogError> {
    let mut texts: Vec<(String, &str)> = vec![
        ("name".into(), &item.name),
        ("description".into(), &item.description),
    ];
    for (i, service) in item.services.iter().enumerate() {
        texts.push((format!("services[{i}].name"), &service.name));
        texts.push((format!("services[{i}].department"), &service.department));
    }
    for material in &item.materials {
        texts.push((format!("materials.{}.name", material.id), &material.name));
    }
    for field in &item.form {
        texts.push((format!("form.{}.label", field.name), &field.label));
        for option in &field.options {
            texts.push((format!("form.{}.options", field.name), option));
        }
    }
    for part in &item.parts {
        texts.push((format!("parts.{}.name", part.id), &part.name));
    }
    match texts
        .into_iter()
        .find_map(|(field, text)| crate::rules::text::problem(text).map(|p| (field, p)))
    {
        Some((field, problem)) => Err(item.fail(field, problem)),
        None => Ok(()),
    }
}

/// The license types an item names (its materials' and the types they recognize).
fn license_types(item: &CatalogItem) -> impl Iterator<Item = &str> {
    item.materials.iter().flat_map(|m| {
        m.license_type
            .iter()
            .chain(&m.recognized_license_types)
            .map(String::as_str)
    })
}

/// Who an item belongs to, for a refusal.
fn owner(item: &CatalogItem) -> String {
    match (item.list, item.publishing_region) {
        (CatalogList::RegionalFeatured, Some(region)) => format!("region {region}"),
        (CatalogList::Annual, _) => "the annual list".to_owned(),
        _ => "the national list".to_owned(),
    }
}

/// A changed catalog, checked whole.
fn changed(version: String, items: Vec<CatalogItem>) -> Result<Option<Catalog>, ChangeRefused> {
    let catalog = Catalog { version, items };
    catalog.validate()?;
    Ok(Some(catalog))
}

// The protobuf form of the listings (used by `wire`).

pub(super) fn annual_to_proto(annual: &Option<AnnualListing>) -> Option<v1::AnnualListing> {
    annual.as_ref().map(|a| v1::AnnualListing {
        year: u32::from(a.year),
        available_everywhere_by: a.available_everywhere_by.clone(),
    })
}

pub(super) fn annual_from_proto(
    label: &str,
    annual: &Option<v1::AnnualListing>,
) -> Result<Option<AnnualListing>, CatalogError> {
    let Some(annual) = annual else {
        return Ok(None);
    };
    let year = u16::try_from(annual.year).map_err(|_| CatalogError::Item {
        item: label.to_owned(),
        field: "annual.year".to_owned(),
        problem: "must be between 2000 and 2100".to_owned(),
    })?;
    Ok(Some(AnnualListing {
        year,
        available_everywhere_by: annual.available_everywhere_by.clone(),
    }))
}

pub(super) fn adoptions_to_proto(adoptions: &[Adoption]) -> Vec<v1::Adoption> {
    adoptions
        .iter()
        .map(|a| v1::Adoption {
            region: a.region.as_str().to_owned(),
            adopted_on: a.adopted_on.clone(),
        })
        .collect()
}

pub(super) fn adoptions_from_proto(
    label: &str,
    adoptions: &[v1::Adoption],
) -> Result<Vec<Adoption>, CatalogError> {
    adoptions
        .iter()
        .map(|a| {
            let region = RegionCode::parse(&a.region).map_err(|e| CatalogError::Item {
                item: label.to_owned(),
                field: "adoptions.region".to_owned(),
                problem: e.to_string(),
            })?;
            Ok(Adoption {
                region,
                adopted_on: a.adopted_on.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::catalog::test_support::item;

    fn prefix(p: &str) -> RegionPrefix {
        RegionPrefix::parse(p).unwrap()
    }

    fn code(c: &str) -> RegionCode {
        RegionCode::parse(c).unwrap()
    }

    /// A new featured item of Guangdong's, shaped like Shanghai's.
    fn guangdong_item() -> CatalogItem {
        let mut item = item("sh-foreigner-work");
        item.id = "gd-talent-settle".into();
        item.publishing_region = None;
        item
    }

    #[test]
    fn a_featured_item_is_offered_by_its_publisher_and_adopters_only() {
        let catalog = Catalog::embedded();
        let featured = catalog.item("sh-foreigner-work").unwrap();
        assert!(featured.offered_in(&code("310000")));
        assert!(featured.offered_in(&code("310115")));
        assert!(!featured.offered_in(&code("440000")));
        let national = catalog.item("newborn-birth").unwrap();
        assert!(national.offered_in(&code("440000")));

        let adopted = catalog
            .with_adoption(
                &prefix("44"),
                "sh-foreigner-work",
                "2026-12-05",
                "v2".into(),
            )
            .unwrap()
            .unwrap();
        let featured = adopted.item("sh-foreigner-work").unwrap();
        assert!(featured.offered_in(&code("440305")), "a province's city");
        assert!(!featured.offered_in(&code("110000")));
        assert_eq!(adopted.version, "v2");
        // Adopting again, or as one of Guangdong's cities, changes nothing.
        for again in ["44", "4403"] {
            let same = adopted.with_adoption(
                &prefix(again),
                "sh-foreigner-work",
                "2026-12-06",
                "v3".into(),
            );
            assert!(same.unwrap().is_none(), "{again}");
        }
        // The publisher offers it already.
        let own = catalog.with_adoption(
            &prefix("31"),
            "sh-foreigner-work",
            "2026-12-05",
            "v2".into(),
        );
        assert!(own.unwrap().is_none());
    }

    #[test]
    fn only_featured_items_that_exist_are_adopted() {
        let catalog = Catalog::embedded();
        let national = catalog
            .with_adoption(&prefix("44"), "newborn-birth", "2026-12-05", "v2".into())
            .unwrap_err();
        assert!(
            national
                .to_string()
                .contains("list: is not a featured item"),
            "{national}"
        );
        let unknown = catalog
            .with_adoption(&prefix("44"), "nothing", "2026-12-05", "v2".into())
            .unwrap_err();
        assert!(
            matches!(unknown, ChangeRefused::Unknown { .. }),
            "{unknown}"
        );
    }

    #[test]
    fn a_region_publishes_its_own_featured_items_with_known_license_types() {
        let catalog = Catalog::embedded();
        let published = catalog
            .with_publication(&prefix("44"), guangdong_item(), "v2".into())
            .unwrap()
            .unwrap();
        let gd = published.item("gd-talent-settle").unwrap();
        assert_eq!(gd.publishing_region, Some(code("440000")));
        assert!(!gd.offered_in(&code("310000")));
        // The same publication again records nothing; a new version of it does.
        assert!(
            published
                .with_publication(&prefix("44"), guangdong_item(), "v3".into())
                .unwrap()
                .is_none()
        );
        let mut revised = guangdong_item();
        revised.time_limit_working_days = 5;
        let adopted = published
            .with_adoption(&prefix("31"), "gd-talent-settle", "2026-12-05", "v3".into())
            .unwrap()
            .unwrap();
        let republished = adopted
            .with_publication(&prefix("44"), revised, "v4".into())
            .unwrap()
            .unwrap();
        let gd = republished.item("gd-talent-settle").unwrap();
        assert_eq!(gd.time_limit_working_days, 5);
        assert_eq!(gd.adoptions.len(), 1, "adoptions survive a new version");

        // Another region's item, a national item, a wrong publisher, a list, a
        // made-up license type, adoptions: each refused, named.
        let refused = |by: &str, item: CatalogItem| {
            catalog
                .with_publication(&prefix(by), item, "v2".into())
                .unwrap_err()
                .to_string()
        };
        let theirs = refused("44", item("sh-foreigner-work").with_publisher(None));
        assert!(theirs.contains("belongs to region 310000"), "{theirs}");
        let mut national = item("newborn-birth");
        national.list = CatalogList::RegionalFeatured;
        assert!(refused("44", national).contains("belongs to the national list"));
        let named = refused("44", guangdong_item().with_publisher(Some(code("310000"))));
        assert!(
            named.contains("publishing_region: is 310000, but the caller is region 440000"),
            "{named}"
        );
        let mut listed = guangdong_item();
        listed.list = CatalogList::National;
        assert!(refused("44", listed).contains("list: a region publishes only regional_featured"));
        let mut made_up = guangdong_item();
        made_up.materials[0].license_type = Some("pet_license".into());
        let made_up = refused("44", made_up);
        assert!(
            made_up.contains("materials.employer_business_license.license_type: \"pet_license\" is no license type"),
            "{made_up}"
        );
        let mut adopted = guangdong_item();
        adopted.adoptions.push(Adoption {
            region: code("110000"),
            adopted_on: "2026-12-05".into(),
        });
        assert!(refused("44", adopted).contains("adoptions: are recorded as regions adopt"));
        // An inconsistent item, as any catalog change would be.
        let mut broken = guangdong_item();
        broken.time_limit_working_days = 0;
        assert!(refused("44", broken).contains("time_limit_working_days"));
        // A name that displays as something else.
        let mut spoofed = guangdong_item();
        spoofed.services[0].department = "公安局\u{202E}局安公".into();
        let spoofed = refused("44", spoofed);
        assert!(
            spoofed.contains("services[0].department: must not contain bidirectional"),
            "{spoofed}"
        );
        // Too large to be kept by every node.
        let mut large = guangdong_item();
        large.description = "长".repeat(MAX_PUBLISHED_ITEM_BYTES / 3 + 1);
        assert!(refused("44", large).contains("bytes encoded; at most 65536"));
        // Too many of one region's.
        let mut full = catalog.clone();
        for n in 0..MAX_FEATURED_PER_REGION {
            let mut item = guangdong_item();
            item.id = format!("gd-{n}");
            full = full
                .with_publication(&prefix("44"), item, format!("v{n}"))
                .unwrap()
                .unwrap();
        }
        let one_more = full
            .with_publication(&prefix("44"), guangdong_item(), "v".into())
            .unwrap_err()
            .to_string();
        assert!(one_more.contains("has 100 featured items"), "{one_more}");
        let mut revised = guangdong_item();
        revised.id = "gd-7".into();
        revised.time_limit_working_days = 3;
        assert!(
            full.with_publication(&prefix("44"), revised, "v".into())
                .is_ok()
        );
    }

    #[test]
    fn listings_are_consistent() {
        let catalog = Catalog::embedded();
        let annual = catalog.item("household-transfer").unwrap();
        assert_eq!(annual.annual.as_ref().unwrap().year, 2026);
        let check = |item: CatalogItem| item.check_listing().map_err(|e| e.to_string());
        let mut missing = annual.clone();
        missing.annual = None;
        assert!(check(missing).unwrap_err().contains("annual: is required"));
        let mut far = annual.clone();
        far.annual.as_mut().unwrap().available_everywhere_by = "2029-01-01".into();
        assert!(
            check(far)
                .unwrap_err()
                .contains("the list's year or the next")
        );
        let mut bad_date = annual.clone();
        bad_date.annual.as_mut().unwrap().available_everywhere_by = "2026-02-30".into();
        assert!(
            check(bad_date)
                .unwrap_err()
                .contains("annual.available_everywhere_by")
        );
        let mut featured = item("sh-foreigner-work");
        featured.adoptions = vec![
            Adoption {
                region: code("440000"),
                adopted_on: "2026-12-05".into(),
            },
            Adoption {
                region: code("440000"),
                adopted_on: "2026-12-06".into(),
            },
        ];
        assert!(
            check(featured.clone())
                .unwrap_err()
                .contains("adopted twice")
        );
        featured.adoptions[1].region = code("310115");
        assert!(
            check(featured)
                .unwrap_err()
                .contains("within the publishing region")
        );
    }

    #[test]
    fn listings_survive_the_wire() {
        let catalog = Catalog::embedded()
            .with_adoption(
                &prefix("44"),
                "sh-foreigner-work",
                "2026-12-05",
                "v2".into(),
            )
            .unwrap()
            .unwrap();
        let back = Catalog::from_proto(&catalog.to_proto()).unwrap();
        assert_eq!(back, catalog);
    }

    impl CatalogItem {
        fn with_publisher(mut self, publisher: Option<RegionCode>) -> Self {
            self.publishing_region = publisher;
            self
        }
    }
}
