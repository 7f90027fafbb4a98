//! The national one-thing catalog (一件事目录): its domain types, their JSON form
//! (`catalog/national.json`) and protobuf form (`GetCatalogResponse`), the consistency
//! rules every catalog must satisfy, and what nodes compute from an item: form
//! pre-review (智能预审), the competent region, the promised date and missing materials.
//!
//! Gateway and nodes run the same code here, so an application pre-reviewed at one node
//! gets the same verdict at any other (无差别受理).
//!
//! One submodule per job:
//!
//! - `model`: the domain types and trivial accessors, including the mutual-recognition
//!   catalog (which license types stand in for which materials).
//! - `json`: the JSON form and the vendored catalog ([`Catalog::embedded`]).
//! - `wire`: the protobuf form and the enum mappings to [`v1`](crate::v1).
//! - `consistency`: the rules every catalog must satisfy ([`Catalog::validate`]).
//! - `prereview`: form pre-review ([`CatalogItem::validate_form`]) and missing materials.
//! - `fields`: the per-type value checkers behind pre-review.
//! - `competent`: the competent-region rule ([`CatalogItem::competent_region`]).
//! - `lists`: the three lists, publication and adoption ([`CatalogItem::offered_in`]).
//!
//! The working-day arithmetic behind [`CatalogItem::promised_date`] is in
//! [`calendar`](crate::rules::calendar).

mod competent;
mod consistency;
mod fields;
mod json;
mod lists;
mod model;
mod prereview;
#[cfg(test)]
mod test_support;
mod wire;

pub use consistency::is_catalog_id;
pub use lists::ChangeRefused;
pub use model::{
    Adoption, AnnualListing, BundledService, Catalog, CatalogError, CatalogItem, CatalogList,
    CompetentRegion, DEFAULT_TEXT_MAX_LENGTH, FieldType, FormField, HandlingMode, JointPart,
    Material, MaterialKind, Prefill,
};
pub use prereview::{FieldError, FormErrors};
pub use wire::InvalidHandlingMode;
