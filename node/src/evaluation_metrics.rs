//! The counts of citizens' evaluations (see `crate::evaluation`): given at this node by
//! handling province, one-thing and level; follow-ups opened here as the handling region.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GivenLabels {
    pub handling_region: String,
    pub one_thing: String,
    pub level: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FollowUpLabels {
    pub one_thing: String,
    pub level: &'static str,
}

/// Evaluations given here by handling province, one-thing and level; follow-ups opened
/// here as the handling region.
#[derive(Debug)]
pub struct EvaluationMetrics {
    pub given: Family<GivenLabels, Counter>,
    pub follow_ups: Family<FollowUpLabels, Counter>,
}

impl EvaluationMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            given: Family::default(),
            follow_ups: Family::default(),
        };
        registry.register(
            tongban_proto::contract::node_metrics::EVALUATIONS,
            "Citizens' evaluations of cases filed here, by handling province, one-thing and level",
            metrics.given.clone(),
        );
        registry.register(
            tongban_proto::contract::node_metrics::FOLLOW_UPS,
            "Follow-ups of poor evaluations opened here as the handling region",
            metrics.follow_ups.clone(),
        );
        metrics
    }
}
