//! Who the gateway says is calling, and which codes that caller owns: the region of its
//! certificate (`tongban-verified-origin`) less the prefixes registered to other
//! members inside it (`tongban-verified-carve-outs`, a city that runs its own node). A
//! province's node contains its cities' codes, but does not own those of a city with a
//! node of its own: every check of a code against the caller asks [`VerifiedOrigin::owns`],
//! never prefix containment alone.

use std::fmt;

use tongban_proto::{
    contract::metadata,
    rules::region::{RegionCode, RegionPrefix},
};
use tonic::metadata::MetadataMap;

use crate::error::NodeError;

/// The calling region as the gateway verified it, with its carve-outs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedOrigin {
    prefix: RegionPrefix,
    carve_outs: Vec<RegionPrefix>,
}

impl VerifiedOrigin {
    /// The verified origin in `metadata`. A missing carve-out header means none (a
    /// gateway older than it); a malformed one, or one naming a prefix outside the
    /// origin, is refused: only the gateway sets it.
    pub fn from_metadata(metadata: &MetadataMap) -> Result<Self, NodeError> {
        let value = metadata
            .get(metadata::VERIFIED_ORIGIN)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| NodeError::invalid(metadata::VERIFIED_ORIGIN, "missing"))?;
        let prefix = RegionPrefix::parse(value)
            .map_err(|e| NodeError::invalid(metadata::VERIFIED_ORIGIN, e.to_string()))?;
        let Some(carve_outs) = metadata.get(metadata::VERIFIED_CARVE_OUTS) else {
            return Ok(Self::new(prefix, Vec::new()));
        };
        let malformed = || {
            NodeError::invalid(
                metadata::VERIFIED_CARVE_OUTS,
                "must be region prefixes inside the verified origin, comma-separated",
            )
        };
        let carve_outs = carve_outs
            .to_str()
            .map_err(|_| malformed())?
            .split(metadata::CARVE_OUT_SEPARATOR)
            .map(|p| match RegionPrefix::parse(p) {
                Ok(inner) if inner.len() > prefix.len() && inner.as_str().starts_with(value) => {
                    Ok(inner)
                }
                _ => Err(malformed()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(prefix, carve_outs))
    }

    /// `prefix` less `carve_outs`.
    pub fn new(prefix: RegionPrefix, carve_outs: Vec<RegionPrefix>) -> Self {
        Self { prefix, carve_outs }
    }

    /// The region of the caller's certificate.
    pub fn prefix(&self) -> RegionPrefix {
        self.prefix
    }

    /// Whether the caller owns `code`: inside its region and inside none of the regions
    /// registered to other members there.
    pub fn owns(&self, code: &RegionCode) -> bool {
        self.prefix.contains(code) && !self.carve_outs.iter().any(|c| c.contains(code))
    }

    /// Refuses `code` unless the caller owns it; `what` names the code in the refusal.
    pub fn require(&self, code: &RegionCode, what: &str) -> Result<(), NodeError> {
        if self.owns(code) {
            return Ok(());
        }
        let prefix = self.prefix;
        Err(NodeError::PermissionDenied(
            match self.carve_outs.iter().find(|c| c.contains(code)) {
                Some(own) => format!(
                    "{what} {code} is in region {own}, which runs its own node: the calling \
                     region {prefix} cannot act for it"
                ),
                None => format!("{what} {code} is outside the calling region {prefix}"),
            },
        ))
    }
}

impl fmt::Display for VerifiedOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    fn metadata(pairs: &[(&'static str, &'static str)]) -> MetadataMap {
        let mut m = MetadataMap::new();
        for (k, v) in pairs {
            m.insert(*k, MetadataValue::from_static(v));
        }
        m
    }

    fn code(c: &str) -> RegionCode {
        RegionCode::parse(c).unwrap()
    }

    #[test]
    fn a_province_does_not_own_a_city_with_its_own_node() {
        let origin = VerifiedOrigin::from_metadata(&metadata(&[
            (metadata::VERIFIED_ORIGIN, "44"),
            (metadata::VERIFIED_CARVE_OUTS, "4403,440104"),
        ]))
        .unwrap();
        assert!(origin.owns(&code("440100")) && origin.owns(&code("440000")));
        assert!(!origin.owns(&code("440305")) && !origin.owns(&code("440300")));
        assert!(!origin.owns(&code("440104")) && !origin.owns(&code("310000")));
        let err = origin.require(&code("440305"), "case.origin_region");
        let err = err.unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(
            err.to_string().contains("4403, which runs its own node"),
            "{err}"
        );
        let err = origin
            .require(&code("310000"), "x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside the calling region 44"), "{err}");
    }

    #[test]
    fn no_carve_out_header_means_none() {
        let origin =
            VerifiedOrigin::from_metadata(&metadata(&[(metadata::VERIFIED_ORIGIN, "44")])).unwrap();
        assert!(origin.owns(&code("440305")));
        assert_eq!(origin.to_string(), "44");
    }

    #[test]
    fn malformed_origins_and_carve_outs_are_refused() {
        for pairs in [
            &[][..],
            &[(metadata::VERIFIED_ORIGIN, "4")],
            &[
                (metadata::VERIFIED_ORIGIN, "44"),
                (metadata::VERIFIED_CARVE_OUTS, ""),
            ],
            &[
                (metadata::VERIFIED_ORIGIN, "44"),
                (metadata::VERIFIED_CARVE_OUTS, "4403,31"),
            ],
            &[
                (metadata::VERIFIED_ORIGIN, "44"),
                (metadata::VERIFIED_CARVE_OUTS, "44"),
            ],
            &[
                (metadata::VERIFIED_ORIGIN, "44"),
                (metadata::VERIFIED_CARVE_OUTS, "4403, 4405"),
            ],
        ] {
            let err = VerifiedOrigin::from_metadata(&metadata(pairs)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{pairs:?}");
        }
    }
}
