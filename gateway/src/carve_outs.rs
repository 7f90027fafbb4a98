//! The carve-outs of each member: the registered prefixes inside its region that belong
//! to other members (Shenzhen's 4403 inside Guangdong's 44). The node a call reaches is
//! told them beside the verified origin (`tongban-verified-carve-outs`), so it can
//! check that the caller owns the exact code an application or case names, which the
//! gateway cannot see without decoding the body.
//!
//! Computed once per registry, as ready header values: a relayed call only clones one
//! (a reference count), never builds it.

use std::collections::HashMap;

use http::HeaderValue;
use tongban_proto::{contract::metadata, rules::region::RegionPrefix};
use tongban_runtime::trust::identity::PeerIdentity;

/// Each member's carve-outs header value; members with none are absent.
#[derive(Debug, Default)]
pub struct CarveOuts(HashMap<PeerIdentity, HeaderValue, foldhash::fast::RandomState>);

impl CarveOuts {
    /// The carve-outs of every member among `routes`, (registered prefix, the identity
    /// its node must present) pairs. A region registered to the member again inside a
    /// carve-out stays carved out: the node refuses it rather than guess (safe side).
    pub fn of<'a, I>(routes: I) -> Self
    where
        I: IntoIterator<Item = (&'a RegionPrefix, &'a PeerIdentity)>,
        I::IntoIter: Clone,
    {
        let routes = routes.into_iter();
        let mut values = HashMap::default();
        for identity in routes.clone().map(|(_, identity)| identity) {
            let PeerIdentity::Region(caller) = identity else {
                continue;
            };
            if values.contains_key(identity) {
                continue;
            }
            let mut inside: Vec<&str> = routes
                .clone()
                .filter(|(prefix, owner)| {
                    owner != &identity
                        && prefix.len() > caller.len()
                        && prefix.as_str().starts_with(caller.as_str())
                })
                .map(|(prefix, _)| prefix.as_str())
                .collect();
            if inside.is_empty() {
                continue;
            }
            inside.sort_unstable();
            let text = inside.join(&metadata::CARVE_OUT_SEPARATOR.to_string());
            // Digits and commas only: always a valid header value.
            if let Ok(value) = HeaderValue::from_str(&text) {
                values.insert(identity.clone(), value);
            }
        }
        Self(values)
    }

    /// The header value of `identity`'s carve-outs, if it has any.
    pub fn of_member(&self, identity: &PeerIdentity) -> Option<&HeaderValue> {
        self.0.get(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(p: &str) -> RegionPrefix {
        RegionPrefix::parse(p).unwrap()
    }

    fn region(p: &str) -> PeerIdentity {
        PeerIdentity::Region(prefix(p))
    }

    #[test]
    fn a_province_is_told_the_cities_that_run_their_own_nodes() {
        let routes = [
            (prefix("44"), region("44")),
            (prefix("4403"), region("4403")),
            (prefix("440104"), region("440104")),
            // A prefix the province registers for its own node is not carved out.
            (prefix("4401"), region("44")),
            (prefix("31"), region("31")),
            (prefix("4405"), region("4405")),
        ];
        let carve_outs = CarveOuts::of(routes.iter().map(|(p, i)| (p, i)));
        let of = |p: &str| {
            carve_outs
                .of_member(&region(p))
                .map(|v| v.to_str().unwrap())
        };
        assert_eq!(of("44"), Some("440104,4403,4405"));
        assert_eq!(of("4403"), None);
        assert_eq!(of("31"), None);
        assert_eq!(of("11"), None);
    }
}
