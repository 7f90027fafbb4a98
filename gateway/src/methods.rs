//! The method table: every method the gateway's federation listener serves, named once
//! with its policy. Dispatch, authorization, the relay's deadlines and the audit trail
//! read it; limits and caches key on it.

use std::time::Duration;

use tongban_runtime::trust::identity::PeerIdentity;

/// Path prefix of the methods nodes call on the gateway to reach another node.
pub const GATEWAY_SERVICE: &str = "/tongban.federation.v1.Gateway/";

/// Names of the methods other modules single out (the metrics count cases by them).
pub const DELIVER_APPLICATION: &str = "DeliverApplication";
pub const PUSH_STATUS: &str = "PushStatus";

/// How the gateway serves a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serve {
    /// Relayed as bytes, never decoded, to this path on the target node.
    Relay { node_path: &'static str },
    /// Decoded by the gateway: a mutual-recognition lookup it routes by content,
    /// verifies, caches and answers with a verdict (see `crate::recognition`).
    Decode(Lookup),
    /// Answered by a gRPC service of the gateway itself (catalog, health, reflection).
    Local,
}

/// The decoded methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    Identity,
    License,
    HolderLicenses,
    Revocation,
}

/// Whether a call must carry `tongban-idempotency-key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyPolicy {
    /// A state-changing call: the receiver applies each key once, so retries are safe.
    Required,
    /// Read-only: a key, if sent, is only recorded.
    Optional,
}

/// Who may call a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Callers {
    /// Provincial (or delegated) nodes only: a gateway never originates federation calls.
    Nodes,
    /// Any member of the federation with a valid certificate.
    Members,
}

impl Callers {
    pub fn admit(self, identity: &PeerIdentity) -> bool {
        match self {
            Self::Nodes => matches!(identity, PeerIdentity::Region(_)),
            Self::Members => true,
        }
    }
}

/// One method and its policy.
#[derive(Debug)]
pub struct Method {
    /// Position in [`METHODS`]: per-method state (deadlines, counters) is indexed by it.
    pub index: usize,
    /// The method's name as audited (`DeliverApplication`).
    pub name: &'static str,
    /// Its gRPC path on the gateway.
    pub path: &'static str,
    pub serve: Serve,
    /// Whether the call changes state at its receiver.
    pub changes_state: bool,
    pub idempotency_key: KeyPolicy,
    /// The longest a call may take, whatever `grpc-timeout` the caller sets; the
    /// operator's `upstream.request_timeout` may lower it.
    pub deadline: Duration,
    pub callers: Callers,
}

const fn relayed(
    index: usize,
    name: &'static str,
    path: &'static str,
    node_path: &'static str,
    changes_state: bool,
    deadline: Duration,
) -> Method {
    Method {
        index,
        name,
        path,
        serve: Serve::Relay { node_path },
        changes_state,
        idempotency_key: if changes_state {
            KeyPolicy::Required
        } else {
            KeyPolicy::Optional
        },
        deadline,
        callers: Callers::Nodes,
    }
}

const fn decoded(
    index: usize,
    name: &'static str,
    path: &'static str,
    lookup: Lookup,
    changes_state: bool,
) -> Method {
    Method {
        index,
        name,
        path,
        serve: Serve::Decode(lookup),
        changes_state,
        idempotency_key: if changes_state {
            KeyPolicy::Required
        } else {
            KeyPolicy::Optional
        },
        deadline: Duration::from_secs(5),
        callers: Callers::Nodes,
    }
}

const fn local(index: usize, name: &'static str, path: &'static str) -> Method {
    Method {
        index,
        name,
        path,
        serve: Serve::Local,
        changes_state: false,
        idempotency_key: KeyPolicy::Optional,
        deadline: Duration::from_secs(10),
        callers: Callers::Members,
    }
}

/// A gateway service's method that changes what the gateway serves, in the calling
/// region's name: only nodes call it. Naturally idempotent (a repeat finds the change
/// made and records nothing), so no idempotency key.
const fn local_change(index: usize, name: &'static str, path: &'static str) -> Method {
    Method {
        changes_state: true,
        callers: Callers::Nodes,
        ..local(index, name, path)
    }
}

/// Every method of the federation listener.
pub static METHODS: [Method; 17] = [
    relayed(
        0,
        DELIVER_APPLICATION,
        "/tongban.federation.v1.Gateway/DeliverApplication",
        "/tongban.federation.v1.Node/DeliverApplication",
        true,
        Duration::from_secs(10),
    ),
    relayed(
        1,
        "QueryStatus",
        "/tongban.federation.v1.Gateway/QueryStatus",
        "/tongban.federation.v1.Node/QueryStatus",
        false,
        Duration::from_secs(5),
    ),
    relayed(
        2,
        PUSH_STATUS,
        "/tongban.federation.v1.Gateway/PushStatus",
        "/tongban.federation.v1.Node/PushStatus",
        true,
        Duration::from_secs(10),
    ),
    decoded(
        3,
        "VerifyIdentity",
        "/tongban.federation.v1.Gateway/VerifyIdentity",
        Lookup::Identity,
        false,
    ),
    decoded(
        4,
        "LookupLicense",
        "/tongban.federation.v1.Gateway/LookupLicense",
        Lookup::License,
        false,
    ),
    decoded(
        5,
        "ListLicenses",
        "/tongban.federation.v1.Gateway/ListLicenses",
        Lookup::HolderLicenses,
        false,
    ),
    decoded(
        6,
        "PublishRevocation",
        "/tongban.federation.v1.Gateway/PublishRevocation",
        Lookup::Revocation,
        true,
    ),
    local(7, "GetCatalog", "/tongban.federation.v1.Catalog/GetCatalog"),
    local(8, "Health.Check", "/grpc.health.v1.Health/Check"),
    local(9, "Health.Watch", "/grpc.health.v1.Health/Watch"),
    local(
        10,
        "Reflection",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    ),
    local(
        11,
        "Reflection.v1alpha",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ),
    relayed(
        12,
        "SubmitEvaluation",
        "/tongban.federation.v1.Gateway/SubmitEvaluation",
        "/tongban.federation.v1.Node/SubmitEvaluation",
        true,
        Duration::from_secs(10),
    ),
    relayed(
        13,
        "RaiseDispute",
        "/tongban.federation.v1.Gateway/RaiseDispute",
        "/tongban.federation.v1.Node/RaiseDispute",
        true,
        Duration::from_secs(10),
    ),
    relayed(
        14,
        "SettleDispute",
        "/tongban.federation.v1.Gateway/SettleDispute",
        "/tongban.federation.v1.Node/SettleDispute",
        true,
        Duration::from_secs(10),
    ),
    local_change(
        15,
        "PublishFeaturedItem",
        "/tongban.federation.v1.Catalog/PublishFeaturedItem",
    ),
    local_change(
        16,
        "AdoptFeaturedItem",
        "/tongban.federation.v1.Catalog/AdoptFeaturedItem",
    ),
];

/// The issuer methods the gateway calls on nodes for the decoded lookups.
pub mod issuer_paths {
    pub const ASSERT_IDENTITY: &str = "/tongban.federation.v1.Node/AssertIdentity";
    pub const FETCH_LICENSE: &str = "/tongban.federation.v1.Node/FetchLicense";
    pub const FETCH_HOLDER_LICENSES: &str = "/tongban.federation.v1.Node/FetchHolderLicenses";
    /// Not a lookup: the gateway's reports of lookups it answered from its cache.
    pub const RECORD_ACCESSES: &str = "/tongban.federation.v1.Node/RecordAccesses";
}

/// The method served at `path`, if any.
pub fn lookup(path: &str) -> Option<&'static Method> {
    METHODS.iter().find(|m| m.path == path)
}

/// Whether `path` belongs to the relayed `Gateway` service (known method or not): such
/// calls go through the relay, which audits and refuses unknown ones.
pub fn is_gateway_service(path: &str) -> bool {
    path.starts_with(GATEWAY_SERVICE)
}

/// The relayed methods.
pub fn relayed_methods() -> impl Iterator<Item = &'static Method> {
    METHODS
        .iter()
        .filter(|m| matches!(m.serve, Serve::Relay { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_consistent() {
        for (i, m) in METHODS.iter().enumerate() {
            assert_eq!(m.index, i, "{}", m.name);
            assert_eq!(lookup(m.path).map(|f| f.index), Some(i), "{}", m.name);
            if let Serve::Relay { node_path } = m.serve {
                assert!(is_gateway_service(m.path) && m.path.ends_with(m.name));
                assert!(node_path.starts_with("/tongban.federation.v1.Node/"));
                assert!(node_path.ends_with(m.name));
                assert_eq!(m.callers, Callers::Nodes);
            } else if let Serve::Decode(_) = m.serve {
                assert!(is_gateway_service(m.path) && m.path.ends_with(m.name));
                assert_eq!(m.callers, Callers::Nodes);
            } else {
                assert!(!is_gateway_service(m.path), "{}", m.name);
            }
            // Every state-changing call can be retried safely: by its key, or (the
            // catalog's changes) because a repeat finds the change made.
            if m.changes_state && m.serve != Serve::Local {
                assert_eq!(m.idempotency_key, KeyPolicy::Required, "{}", m.name);
            }
        }
        assert_eq!(relayed_methods().count(), 6);
        assert!(lookup("/tongban.federation.v1.Gateway/Delete").is_none());
    }

    #[test]
    fn only_nodes_originate_relayed_calls() {
        let node = PeerIdentity::from_uri("spiffe://tongban/region/44").unwrap();
        assert!(Callers::Nodes.admit(&node));
        assert!(!Callers::Nodes.admit(&PeerIdentity::Gateway));
        assert!(Callers::Members.admit(&PeerIdentity::Gateway));
    }
}
