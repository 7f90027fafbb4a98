//! The node's audit trail: what it accepted and what it handed over — each application
//! filed at its portal, each federation call it served, each outbox entry handed over
//! or given up as a dead letter. The same kind of record as the gateway's: a
//! hash-chained, signed file written whatever the log level
//! (`tongban_runtime::audit::trail`). Records name cases, one-things, regions, codes
//! and trace ids, never an applicant.

use serde_json::json;
use tongban_runtime::audit::trail::AuditTrail;

use crate::store::OutboxEntry;

/// The node's trail; records go nowhere when it has none (unit tests).
#[derive(Clone, Default)]
pub struct NodeAudit(Option<AuditTrail>);

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl NodeAudit {
    pub fn new(trail: AuditTrail) -> Self {
        Self(Some(trail))
    }

    /// Writes what is queued and the last signed checkpoint, and waits for the writer
    /// (bounded): called at shutdown, after the listeners and tasks have ended.
    pub async fn close(&self) {
        if let Some(trail) = &self.0 {
            trail.close().await;
        }
    }

    /// The trail itself, for what records on its own (the operator listener).
    pub fn trail(&self) -> Option<AuditTrail> {
        self.0.clone()
    }

    fn write(&self, record: serde_json::Value) {
        if let Some(trail) = &self.0 {
            trail.record(record.to_string());
        }
    }

    /// An application filed at the portal (a replay of one is not recorded again).
    pub fn filed(&self, case: &str, one_thing: &str, handling_region: &str, trace_id: &str) {
        self.write(json!({
            "at": now(), "event": "filed", "case": case, "one_thing": one_thing,
            "handling_region": handling_region, "trace_id": trace_id,
        }));
    }

    /// A federation call served, with the gRPC code it was answered with. `origin`
    /// is the caller region the gateway verified.
    pub fn served(&self, method: &str, origin: &str, code: tonic::Code, trace_id: &str) {
        self.write(json!({
            "at": now(), "event": "served", "method": method, "origin": origin,
            "code": code as i32, "trace_id": trace_id,
        }));
    }

    /// An outbox entry handed over (`done`) or given up (`dead_letter`).
    pub fn outbox(&self, entry: &OutboxEntry, outcome: &str) {
        self.write(json!({
            "at": now(), "event": outcome, "kind": entry.kind.as_str(),
            "case": entry.case_number, "target": entry.target_region,
            "one_thing": entry.one_thing_id, "attempts": entry.attempts + 1,
            "trace_id": entry.trace.trace_id_hex(),
        }));
    }
}
