//! The data-sharing responsibility list (数据共享责任清单): for each region and each kind
//! of data the federation fetches (a person's identity, or a license type of the
//! catalog), who must supply it and the availability they commit to. The gateway
//! exports each commitment as a gauge beside what it measures of the same supply (its
//! lookups' verdicts by issuing province and data, `tongban_gateway_verdicts_total`), so
//! the console and the alert `TongbanSupplyBelowCommitment` put the two side by side:
//! "data is hard to get" (要数难) made a number per supplier.
//!
//! The list is a JSON file (`sharing_list` in the gateway's config; the one built into
//! this release otherwise), checked at start: every region a known province, every kind
//! of data `identity` or a license type some catalog material takes, an availability in
//! (0, 1], a supplier named, no commitment twice.

use std::{collections::BTreeSet, path::Path};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, gauge::Gauge},
    registry::Registry,
};
use serde::Deserialize;
use tongban_proto::rules::{
    catalog::Catalog,
    region::{RegionCode, RegionTable},
    text,
};

/// The list built into this release (the demo federation's regions).
const EMBEDDED: &str = include_str!("../../catalog/sharing-responsibility.json");

/// The metric each commitment is exported as.
pub const COMMITMENT: &str = "tongban_gateway_supply_commitment";

/// The kind of data an identity lookup fetches.
pub const IDENTITY: &str = "identity";

/// A list that cannot be used, naming the entry and field.
#[derive(Debug, thiserror::Error)]
pub enum SharingListError {
    #[error("sharing list {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("sharing list: commitments[{index}].{field}: {problem}")]
    Entry {
        index: usize,
        field: &'static str,
        problem: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListFile {
    version: String,
    #[serde(default)]
    #[allow(dead_code)]
    source: String,
    commitments: Vec<CommitmentFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitmentFile {
    region: String,
    data: String,
    supplier: String,
    availability: f64,
}

/// One commitment, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Commitment {
    /// The province's two digits, as the verdicts' `target` label has them.
    pub province: String,
    /// `identity` or a license type.
    pub data: String,
    pub supplier: String,
    /// The share of lookups the supplier commits to answer, in (0, 1].
    pub availability: f64,
}

/// The list in force.
#[derive(Clone, Debug, Default)]
pub struct SharingList {
    pub version: String,
    pub commitments: Vec<Commitment>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommitmentLabels {
    target: String,
    data: String,
    supplier: String,
}

impl SharingList {
    /// The list at `path`, or the one built in; checked against `catalog`'s license types.
    pub fn load(path: Option<&Path>, catalog: &Catalog) -> Result<Self, SharingListError> {
        let text = match path {
            None => EMBEDDED.to_owned(),
            Some(path) => std::fs::read_to_string(path).map_err(|e| SharingListError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?,
        };
        let shown = path.map_or_else(|| "(built in)".to_owned(), |p| p.display().to_string());
        let file: ListFile = serde_json::from_str(&text).map_err(|e| SharingListError::Read {
            path: shown,
            reason: e.to_string(),
        })?;
        Self::checked(file, catalog, RegionTable::embedded())
    }

    fn checked(
        file: ListFile,
        catalog: &Catalog,
        regions: &RegionTable,
    ) -> Result<Self, SharingListError> {
        let types: BTreeSet<&str> = catalog
            .items
            .iter()
            .flat_map(|i| &i.materials)
            .filter_map(|m| m.license_type.as_deref())
            .collect();
        let mut seen = BTreeSet::new();
        let mut commitments = Vec::with_capacity(file.commitments.len());
        for (index, c) in file.commitments.into_iter().enumerate() {
            let fail = |field, problem: String| SharingListError::Entry {
                index,
                field,
                problem,
            };
            let code = RegionCode::parse(&c.region)
                .ok()
                .filter(|code| *code == code.province() && regions.is_known(code))
                .ok_or_else(|| {
                    fail("region", format!("{:?} is not a province's code", c.region))
                })?;
            if c.data != IDENTITY && !types.contains(c.data.as_str()) {
                return Err(fail(
                    "data",
                    format!(
                        "{:?} is neither identity nor a license type of catalog {}",
                        c.data, catalog.version
                    ),
                ));
            }
            if !(c.availability > 0.0 && c.availability <= 1.0) {
                return Err(fail("availability", "must be in (0, 1]".to_owned()));
            }
            let supplier = c.supplier.trim();
            if supplier.is_empty() || supplier.chars().count() > 64 {
                return Err(fail("supplier", "1 to 64 characters".to_owned()));
            }
            if let Some(problem) = text::problem(supplier) {
                return Err(fail("supplier", problem.to_string()));
            }
            let province = code.as_str()[..2].to_owned();
            if !seen.insert((province.clone(), c.data.clone())) {
                return Err(fail(
                    "data",
                    format!("{} of {} is committed twice", c.data, c.region),
                ));
            }
            commitments.push(Commitment {
                province,
                data: c.data,
                supplier: supplier.to_owned(),
                availability: c.availability,
            });
        }
        Ok(Self {
            version: file.version,
            commitments,
        })
    }

    /// Exports every commitment as a gauge in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let family =
            Family::<CommitmentLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        for c in &self.commitments {
            family
                .get_or_create(&CommitmentLabels {
                    target: c.province.clone(),
                    data: c.data.clone(),
                    supplier: c.supplier.clone(),
                })
                .set(c.availability);
        }
        registry.register(
            COMMITMENT,
            "The data-sharing responsibility list: the share of lookups of this data (identity or a license type) of this province its supplier commits to answer",
            family,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entry: serde_json::Value) -> Result<SharingList, SharingListError> {
        let file: ListFile = serde_json::from_value(serde_json::json!({
            "version": "t", "commitments": [entry]
        }))
        .unwrap();
        SharingList::checked(file, &Catalog::embedded(), RegionTable::embedded())
    }

    #[test]
    fn the_built_in_list_is_valid_and_bad_entries_are_named() {
        let built_in = SharingList::load(None, &Catalog::embedded()).unwrap();
        assert!(built_in.commitments.len() >= 9);
        assert!(built_in.commitments.iter().any(|c| c.province == "44"
            && c.data == "household_register"
            && c.supplier == "广东省公安厅"));
        let good = serde_json::json!({"region": "440000", "data": "identity",
            "supplier": "广东省公安厅", "availability": 0.99});
        assert_eq!(list(good.clone()).unwrap().commitments[0].province, "44");
        let with = |key: &str, value: serde_json::Value| {
            let mut e = good.clone();
            e[key] = value;
            list(e).unwrap_err().to_string()
        };
        assert_eq!(
            with("region", "440300".into()),
            "sharing list: commitments[0].region: \"440300\" is not a province's code"
        );
        assert!(
            with("data", "passport".into())
                .contains("commitments[0].data: \"passport\" is neither")
        );
        assert!(with("availability", 1.5.into()).contains("availability: must be in (0, 1]"));
        assert!(with("availability", 0.into()).contains("availability"));
        assert!(with("supplier", " ".into()).contains("supplier: 1 to 64 characters"));
        assert!(with("supplier", "公安\u{202E}厅".into()).contains("supplier"));
        let twice: ListFile = serde_json::from_value(serde_json::json!({
            "version": "t", "commitments": [good.clone(), good]
        }))
        .unwrap();
        let err = SharingList::checked(twice, &Catalog::embedded(), RegionTable::embedded())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("commitments[1].data: identity of 440000 is committed twice"),
            "{err}"
        );
    }
}
