//! The `data` label of a lookup's verdict, as the responsibility list names data
//! (`crate::sharing`): `identity`, a license type of the catalog, or
//! `holder_licenses`. Made once from the catalog, so a lookup takes a reference count
//! rather than allocating its label.

use std::{collections::HashMap, sync::Arc};

use tongban_proto::rules::catalog::Catalog;

/// Every label a lookup can carry.
pub(super) struct DataLabels {
    pub(super) identity: Arc<str>,
    pub(super) holder_licenses: Arc<str>,
    license_types: HashMap<String, Arc<str>>,
}

impl DataLabels {
    pub(super) fn of(catalog: &Catalog) -> Self {
        let license_types = catalog
            .items
            .iter()
            .flat_map(|i| &i.materials)
            .filter_map(|m| m.license_type.as_deref())
            .map(|t| (t.to_owned(), Arc::from(t)))
            .collect();
        Self {
            identity: Arc::from(crate::sharing::IDENTITY),
            holder_licenses: Arc::from("holder_licenses"),
            license_types,
        }
    }

    /// The label of a license type of the catalog (`None` for a type it does not name).
    pub(super) fn license(&self, license_type: &str) -> Option<Arc<str>> {
        self.license_types.get(license_type).cloned()
    }
}
