//! The counts of disputes of wrong data (see `crate::disputes`), by issuing province:
//! raised at this node's window (by the data disputed), settled (by outcome) and the
//! time each took; open disputes on either side, read from the store at each scrape.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::store::{Store, StoreError};

/// Disputes raised here, by the issuing province and the data disputed.
pub const RAISED: &str = "tongban_node_disputes_raised";
/// Settlements of disputes raised here, by the issuing province and outcome.
pub const SETTLED: &str = "tongban_node_disputes_settled";
/// Time from raising a dispute to its settlement, by the issuing province.
pub const RESOLUTION_SECONDS: &str = "tongban_node_dispute_resolution_seconds";
/// Open disputes, by role (`raised`, `received`), counterpart province and data.
pub const OPEN: &str = "tongban_node_disputes_open";
/// The data an identity dispute is about (as the responsibility list names it).
pub const IDENTITY: &str = "identity";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RaisedLabels {
    pub issuer: String,
    pub data: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SettledLabels {
    pub issuer: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuerLabels {
    pub issuer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpenLabels {
    pub role: String,
    pub counterpart: String,
    pub data: String,
}

fn resolution_histogram() -> Histogram {
    // An hour to a month: disputes are settled by staff, in days.
    Histogram::new([
        3600.0,
        14_400.0,
        86_400.0,
        259_200.0,
        604_800.0,
        1_209_600.0,
        2_592_000.0,
    ])
}

#[derive(Debug)]
pub struct DisputeMetrics {
    pub raised: Family<RaisedLabels, Counter>,
    pub settled: Family<SettledLabels, Counter>,
    pub resolution: Family<IssuerLabels, Histogram, fn() -> Histogram>,
    open: Family<OpenLabels, Gauge>,
    /// Label sets reported so far (kept at zero once their disputes are settled).
    seen: std::sync::Mutex<std::collections::BTreeSet<(String, String, String)>>,
}

/// The province of a 6-digit code (the label the other metrics use).
pub fn province(code: &str) -> String {
    code.chars().take(2).collect()
}

impl DisputeMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            raised: Family::default(),
            settled: Family::default(),
            resolution: Family::new_with_constructor(resolution_histogram),
            open: Family::default(),
            seen: Default::default(),
        };
        registry.register(
            RAISED,
            "Disputes of recognized data raised at this node's window, by issuing province and data",
            metrics.raised.clone(),
        );
        registry.register(
            SETTLED,
            "Settlements of disputes raised here, by issuing province and outcome",
            metrics.settled.clone(),
        );
        registry.register(
            RESOLUTION_SECONDS,
            "Time from raising a dispute here to its settlement by the issuer, by issuing province",
            metrics.resolution.clone(),
        );
        registry.register(
            OPEN,
            "Open disputes, by role (raised here, received as the issuer), counterpart province and data",
            metrics.open.clone(),
        );
        metrics
    }

    /// Reads the open disputes from the store.
    pub async fn refresh(&self, store: &Store) -> Result<(), StoreError> {
        let open = store.open_disputes().await?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut now = std::collections::BTreeMap::new();
        for o in open {
            let key = (o.role, province(&o.counterpart), o.data);
            *now.entry(key.clone()).or_insert(0) += o.open;
            seen.insert(key);
        }
        for key in seen.iter() {
            let labels = OpenLabels {
                role: key.0.clone(),
                counterpart: key.1.clone(),
                data: key.2.clone(),
            };
            self.open
                .get_or_create(&labels)
                .set(now.get(key).copied().unwrap_or(0));
        }
        Ok(())
    }
}
