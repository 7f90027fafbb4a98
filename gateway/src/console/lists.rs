//! The three lists on the console (总体清单、年度清单、特色清单): every one-thing of the
//! catalog in force, with the regions that offer it — all of them for the national and
//! annual lists (an annual item by its deadline), the publisher and its adopters for a
//! featured item (一地创新、全国复用).

use serde::Serialize;
use tongban_proto::rules::{
    catalog::{Catalog, CatalogItem, CatalogList},
    region::RegionTable,
};

use super::figures::region_name;

#[derive(Debug, Serialize)]
pub struct ListRow {
    pub id: String,
    pub name: String,
    /// `national`, `annual` or `regional_featured`.
    pub list: &'static str,
    /// For an annual item: its year, and the date every region offers it by.
    pub year: Option<u16>,
    pub available_everywhere_by: Option<String>,
    /// For a featured item: the publishing region, then each adopter.
    pub offered_by: Vec<Offering>,
}

#[derive(Debug, Serialize)]
pub struct Offering {
    pub region: String,
    pub name: String,
    /// `published` or `adopted`.
    pub role: &'static str,
    /// For an adoption: the date.
    pub since: Option<String>,
}

/// One row per item of `catalog`, in its order.
pub fn lists(catalog: &Catalog, regions: &RegionTable) -> Vec<ListRow> {
    catalog
        .items
        .iter()
        .map(|item| row(item, regions))
        .collect()
}

fn row(item: &CatalogItem, regions: &RegionTable) -> ListRow {
    let offering = |region: &tongban_proto::rules::region::RegionCode, role, since| Offering {
        region: region.as_str().to_owned(),
        name: region_name(regions, region.as_str()),
        role,
        since,
    };
    let offered_by = item
        .publishing_region
        .iter()
        .map(|region| offering(region, "published", None))
        .chain(
            item.adoptions
                .iter()
                .map(|a| offering(&a.region, "adopted", Some(a.adopted_on.clone()))),
        )
        .collect();
    ListRow {
        id: item.id.clone(),
        name: item.name.clone(),
        list: match item.list {
            CatalogList::National => "national",
            CatalogList::Annual => "annual",
            CatalogList::RegionalFeatured => "regional_featured",
        },
        year: item.annual.as_ref().map(|a| a.year),
        available_everywhere_by: item
            .annual
            .as_ref()
            .map(|a| a.available_everywhere_by.clone()),
        offered_by,
    }
}
