//! Operators: the people who may change a running gateway or node (reload it, revoke a
//! license, replay or close a dead letter) or read its console. An operator is named by
//! the URI SAN of a client certificate from the federation CA,
//! `spiffe://tongban/operator/<name>`, and holds the role the process's roster gives that
//! name. A member's certificate is never an operator's, nor the reverse: the federation
//! listeners accept only `gateway` and `region/<prefix>` identities.

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};

use crate::trust::identity::{IdentityError, SCHEME_AND_DOMAIN, tongban_uri};

const OPERATOR_PATH: &str = "operator/";

/// What an operator may do; each role includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads: the console, the dead-letter list.
    Viewer,
    /// Changes too: reloads, revocations, replays and closings of dead letters.
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
        }
    }
}

/// An operator's name: 1 to 64 characters of `a-z`, `0-9`, `.`, `_`, `-`, starting with a
/// letter or digit (it is written into audit records and logs as it is).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct OperatorName(String);

impl OperatorName {
    pub fn parse(name: &str) -> Result<Self, String> {
        let valid_char =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
        match name.chars().next() {
            None => Err("an operator name is empty".to_owned()),
            _ if name.len() > 64 => Err(format!(
                "an operator name is at most 64 characters, not {}",
                name.len()
            )),
            Some(first) if !first.is_ascii_alphanumeric() => Err(format!(
                "operator name {name:?} must start with a letter or digit"
            )),
            _ if !name.chars().all(valid_char) => Err(format!(
                "operator name {name:?} may hold only a-z, 0-9, '.', '_' and '-'"
            )),
            _ => Ok(Self(name.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URI SAN an operator certificate carries: `spiffe://tongban/operator/<name>`.
    pub fn uri(&self) -> String {
        format!("{SCHEME_AND_DOMAIN}{OPERATOR_PATH}{}", self.0)
    }

    /// The operator a DER leaf certificate (already verified by TLS) names.
    pub fn from_certificate(der: &[u8]) -> Result<Self, IdentityError> {
        let uri = tongban_uri(der)?;
        let malformed = |reason: String| IdentityError::Malformed {
            uri: uri.clone(),
            reason,
        };
        let name = uri
            .strip_prefix(SCHEME_AND_DOMAIN)
            .and_then(|rest| rest.strip_prefix(OPERATOR_PATH))
            .ok_or_else(|| malformed("not an operator identity (operator/<name>)".to_owned()))?;
        Self::parse(name).map_err(malformed)
    }
}

impl<'de> Deserialize<'de> for OperatorName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::parse(&name).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for OperatorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An authenticated operator and the role the roster gives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    pub name: OperatorName,
    pub role: Role,
}

/// Who may operate a process: operator name → role. Names not listed are refused
/// whatever their certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Roster(BTreeMap<OperatorName, Role>);

impl Roster {
    pub fn new(entries: impl IntoIterator<Item = (OperatorName, Role)>) -> Self {
        Self(entries.into_iter().collect())
    }

    pub fn role_of(&self, name: &OperatorName) -> Option<Role> {
        self.0.get(name).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;
    use crate::trust::{identity::PeerIdentity, pki::DevCa};

    #[test]
    fn names_are_checked() {
        for good in ["alice", "ops-1", "a", "w.zhang_2"] {
            assert!(OperatorName::parse(good).is_ok(), "{good}");
        }
        let long = "a".repeat(65);
        for bad in ["", "-x", "Alice", "a b", "a/b", "é", long.as_str()] {
            assert!(OperatorName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_operator_certificate_names_an_operator_and_a_member_certificate_does_not() {
        let ca = DevCa::generate("test").unwrap();
        let alice = OperatorName::parse("alice").unwrap();
        let issued = ca
            .issue_operator(&alice, Duration::from_secs(3600))
            .unwrap();
        let der = pem_der(&issued.cert_pem);
        assert_eq!(OperatorName::from_certificate(&der).unwrap(), alice);
        // The federation listeners refuse it.
        assert!(PeerIdentity::from_certificate(&der).is_err());
        let member = ca
            .issue(&PeerIdentity::Gateway, Duration::from_secs(3600))
            .unwrap();
        assert!(OperatorName::from_certificate(&pem_der(&member.cert_pem)).is_err());
    }

    #[test]
    fn the_roster_reads_from_toml_and_refuses_bad_names_and_roles() {
        let roster: Roster = toml::from_str("alice = \"operator\"\nbob = \"viewer\"").unwrap();
        assert_eq!(
            roster.role_of(&OperatorName::parse("alice").unwrap()),
            Some(Role::Operator)
        );
        assert_eq!(
            roster.role_of(&OperatorName::parse("bob").unwrap()),
            Some(Role::Viewer)
        );
        assert_eq!(roster.role_of(&OperatorName::parse("eve").unwrap()), None);
        assert!(toml::from_str::<Roster>("Alice = \"operator\"").is_err());
        assert!(toml::from_str::<Roster>("alice = \"root\"").is_err());
        assert!(Role::Operator > Role::Viewer);
    }

    fn pem_der(pem: &str) -> Vec<u8> {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }
}
