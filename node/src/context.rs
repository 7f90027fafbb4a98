//! What the node's request handlers share: which region this node is, the rules it
//! checks against, and where cases are kept.

use std::sync::Arc;

use tongban_proto::rules::region::{RegionCode, RegionPrefix, RegionTable};

use crate::{
    catalog_copy::CatalogCopy,
    platform::{LicenseRegistry, Platform},
    store::Store,
};

/// Shared by the portal's intake and the federation service.
pub struct NodeContext {
    /// This node's region code (`440000`).
    pub region: RegionCode,
    /// The prefix its certificate names (`44`).
    pub prefix: RegionPrefix,
    pub regions: &'static RegionTable,
    pub catalog: Arc<CatalogCopy>,
    pub store: Store,
    pub platform: Arc<dyn Platform>,
    /// The region's register of persons and licenses (what this node signs).
    pub registry: Arc<dyn LicenseRegistry>,
    /// Key for keyed hashes of ID numbers (never stored or logged in the clear).
    pub id_hash_key: Arc<[u8]>,
    /// This node's spans.
    pub traces: tongban_runtime::observability::traces::Traces,
    /// This node's metrics; `None` when the operator turned them off.
    pub metrics: Option<Arc<crate::metrics::NodeMetrics>>,
    /// This node's audit trail.
    pub audit: crate::audit::NodeAudit,
    /// The official calendar promised dates are counted in.
    pub calendar: crate::calendar::NodeCalendar,
    /// When a poor evaluation's follow-up is due.
    pub evaluations: crate::evaluation_config::EvaluationConfig,
    /// The registered regions (this node's copy of the registry, reloaded): which node
    /// handles which region.
    pub peers: crate::peers::SharedPeerKeys,
}
