//! Peer identities of the federation and how they are read from certificates.
//!
//! Every gateway and node certificate carries a SPIFFE-style URI SAN
//! (`spiffe://tongban/gateway`, `spiffe://tongban/region/44`) that names it, and a DNS SAN
//! derived from the same identity (`gateway.tongban.internal`,
//! `region-44.tongban.internal`) so that ordinary hostname verification on the client side
//! binds a server certificate to the identity it must have.

use std::fmt;

use tongban_proto::rules::region::{RegionCode, RegionPrefix};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

pub(crate) const SCHEME_AND_DOMAIN: &str = "spiffe://tongban/";
const DNS_SUFFIX: &str = ".tongban.internal";

/// A party of the federation, as named by its certificate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PeerIdentity {
    /// The national gateway.
    Gateway,
    /// A provincial (or delegated prefecture) node, named by its region prefix.
    Region(RegionPrefix),
}

/// Why a certificate does not name a federation identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("certificate could not be parsed: {0}")]
    Parse(String),
    #[error("certificate has no spiffe://tongban/ URI SAN")]
    Missing,
    #[error("certificate has more than one spiffe://tongban/ URI SAN")]
    Ambiguous,
    #[error("URI SAN {uri:?} is not a Tongban identity: {reason}")]
    Malformed { uri: String, reason: String },
}

impl PeerIdentity {
    /// Parses `spiffe://tongban/gateway` or `spiffe://tongban/region/<2, 4 or 6 digits>`.
    pub fn from_uri(uri: &str) -> Result<Self, IdentityError> {
        let malformed = |reason: &str| IdentityError::Malformed {
            uri: uri.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = uri
            .strip_prefix(SCHEME_AND_DOMAIN)
            .ok_or_else(|| malformed("not under spiffe://tongban/"))?;
        match rest.split_once('/') {
            None if rest == "gateway" => Ok(Self::Gateway),
            Some(("region", prefix)) => RegionPrefix::parse(prefix)
                .map(Self::Region)
                .map_err(|e| malformed(&e.to_string())),
            _ => Err(malformed("expected gateway or region/<prefix>")),
        }
    }

    /// The URI SAN that names this identity.
    pub fn uri(&self) -> String {
        match self {
            Self::Gateway => format!("{SCHEME_AND_DOMAIN}gateway"),
            Self::Region(p) => format!("{SCHEME_AND_DOMAIN}region/{p}"),
        }
    }

    /// The DNS SAN its server certificate carries, and the TLS server name clients verify.
    pub fn dns_name(&self) -> String {
        match self {
            Self::Gateway => format!("gateway{DNS_SUFFIX}"),
            Self::Region(p) => format!("region-{p}{DNS_SUFFIX}"),
        }
    }

    /// Whether this identity may act for `code`: a node acts for the codes inside its prefix.
    pub fn may_act_for(&self, code: &RegionCode) -> bool {
        match self {
            Self::Gateway => false,
            Self::Region(p) => p.contains(code),
        }
    }

    /// Reads the identity from a DER leaf certificate that TLS has already verified.
    pub fn from_certificate(der: &[u8]) -> Result<Self, IdentityError> {
        Self::from_uri(&tongban_uri(der)?)
    }
}

/// The one `spiffe://tongban/` URI SAN of a DER leaf certificate (a federation member's
/// or an operator's, see [`crate::trust::operator`]).
pub fn tongban_uri(der: &[u8]) -> Result<String, IdentityError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| IdentityError::Parse(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| IdentityError::Parse(e.to_string()))?
        .ok_or(IdentityError::Missing)?;
    let mut found = None;
    for name in &san.value.general_names {
        if let GeneralName::URI(uri) = name
            && uri.starts_with(SCHEME_AND_DOMAIN)
        {
            if found.is_some() {
                return Err(IdentityError::Ambiguous);
            }
            found = Some((*uri).to_owned());
        }
    }
    found.ok_or(IdentityError::Missing)
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gateway_and_regions() {
        assert_eq!(
            PeerIdentity::from_uri("spiffe://tongban/gateway").ok(),
            Some(PeerIdentity::Gateway)
        );
        let id = PeerIdentity::from_uri("spiffe://tongban/region/44").unwrap();
        assert_eq!(id.uri(), "spiffe://tongban/region/44");
        assert_eq!(id.dns_name(), "region-44.tongban.internal");
        assert!(id.may_act_for(&RegionCode::parse("440305").unwrap()));
        assert!(!id.may_act_for(&RegionCode::parse("310000").unwrap()));
    }

    #[test]
    fn rejects_foreign_and_malformed_uris() {
        for uri in [
            "spiffe://other/region/44",
            "spiffe://tongban/region/4",
            "spiffe://tongban/region/44/extra",
            "spiffe://tongban/province/44",
            "spiffe://tongban/gateway/x",
        ] {
            assert!(PeerIdentity::from_uri(uri).is_err(), "{uri}");
        }
    }
}
