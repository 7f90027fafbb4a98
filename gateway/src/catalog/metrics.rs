//! The catalog's metrics: how far into the ledger the catalog served here is (replicas
//! that share the ledger must agree: `TongbanCatalogReplicasDisagree`), and the
//! changes regions asked for, by outcome.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    change: &'static str,
    outcome: &'static str,
}

/// `tongban_gateway_catalog_ledger_position` and `tongban_gateway_catalog_changes_total`.
#[derive(Clone, Debug, Default)]
pub struct CatalogMetrics {
    position: Gauge,
    changes: Family<ChangeLabels, Counter>,
}

impl CatalogMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tongban_gateway_catalog_ledger_position",
            "Catalog ledger changes (featured one-things published and adopted) the catalog served by this replica carries",
            self.position.clone(),
        );
        registry.register(
            "tongban_gateway_catalog_changes",
            "Catalog changes regions asked for: change (publish, adopt) and outcome (recorded; unchanged: the catalog said so already; refused; failed: the ledger could not be written)",
            self.changes.clone(),
        );
    }

    pub fn at(&self, position: u64) {
        self.position
            .set(i64::try_from(position).unwrap_or(i64::MAX));
    }

    pub fn changed(&self, change: &'static str, outcome: &'static str) {
        self.changes
            .get_or_create(&ChangeLabels { change, outcome })
            .inc();
    }
}
