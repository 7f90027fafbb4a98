//! The node's metrics, served on its admin port's `/metrics`:
//!
//! - calls it makes through the gateway and calls the gateway makes on it, by method,
//!   peer region and gRPC code, with latency histograms;
//! - outbox attempts by kind and result, and at scrape time the backlog per target
//!   province: pending entries (those failing so far, and those blocked by a
//!   configuration refusal), the oldest one's age, dead letters;
//! - **per home province of the applicant** (from the ID number; a province, never the
//!   person), for cases filed here: filings, the handling region's acknowledgement and
//!   decisions (`accepted`, `approved`, `rejected`, `refused`), the time from filing to
//!   the first status from the handling region and to its decision. Unequal treatment
//!   of one province's applicants shows as a difference between these series;
//! - the province's platform: calls over HTTP by operation and outcome with latency,
//!   the circuit in front of it, whether it is up (read at scrape time), and problems in
//!   its feeds.

use std::{collections::BTreeMap, time::Duration};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tongban_proto::{
    contract::codes::code_name,
    contract::node_metrics as names,
    v1::{CaseStatus, Stage},
};

use crate::{
    platform::adapter::Platform,
    store::{ApplicationRecord, BacklogRow, OutboxKind, StatusReport, Store, StoreError},
};

/// Latency buckets for calls, in seconds: 1 ms to 10 s.
const CALL_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets for times a case waits, in seconds: 1 s to 30 days.
const CASE_BUCKETS: [f64; 12] = [
    1.0,
    5.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    14_400.0,
    86_400.0,
    259_200.0,
    604_800.0,
    2_592_000.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClientLabels {
    method: &'static str,
    target: String,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    method: &'static str,
    origin: String,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    kind: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FilingLabels {
    home_region: String,
    one_thing: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    home_region: String,
    handling_region: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HomeLabels {
    home_region: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FeedProblemLabels {
    feed: &'static str,
    problem: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PlatformCallLabels {
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BacklogLabels {
    target: String,
}

fn call_histogram() -> Histogram {
    Histogram::new(CALL_BUCKETS)
}

fn case_histogram() -> Histogram {
    Histogram::new(CASE_BUCKETS)
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// The province (2 digits) of a region code or masked ID number; empty if malformed.
pub fn province(code: &str) -> String {
    match code.as_bytes() {
        [a, b, ..] if a.is_ascii_digit() && b.is_ascii_digit() => code[..2].to_owned(),
        _ => String::new(),
    }
}

/// The node's metrics.
pub struct NodeMetrics {
    client_calls: Family<ClientLabels, Counter>,
    client_durations: Histograms<MethodLabels>,
    server_calls: Family<ServerLabels, Counter>,
    server_durations: Histograms<MethodLabels>,
    outbox_attempts: Family<AttemptLabels, Counter>,
    filings: Family<FilingLabels, Counter>,
    outcomes: Family<OutcomeLabels, Counter>,
    first_status: Histograms<HomeLabels>,
    decision_time: Histograms<HomeLabels>,
    backlog_pending: Family<BacklogLabels, Gauge>,
    backlog_oldest: Family<BacklogLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    backlog_failed: Family<BacklogLabels, Gauge>,
    backlog_blocked: Family<BacklogLabels, Gauge>,
    backlog_failing: Family<BacklogLabels, Gauge>,
    feed_problems: Family<FeedProblemLabels, Counter>,
    platform_calls: Family<PlatformCallLabels, Counter>,
    platform_durations: Histograms<OperationLabels>,
    platform_circuit_open: Gauge,
    platform_circuit_opens: Counter,
    platform_up: Gauge,
    /// Open cases due soon and overdue, set at scrape time.
    pub time_limits: crate::time_limits::TimeLimitGauges,
    /// Evaluations given here, follow-ups opened here.
    pub evaluations: crate::evaluation_metrics::EvaluationMetrics,
    pub disputes: crate::dispute_metrics::DisputeMetrics,
}

impl NodeMetrics {
    /// The metrics, registered in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            client_calls: Family::default(),
            client_durations: Family::new_with_constructor(call_histogram),
            server_calls: Family::default(),
            server_durations: Family::new_with_constructor(call_histogram),
            outbox_attempts: Family::default(),
            filings: Family::default(),
            outcomes: Family::default(),
            first_status: Family::new_with_constructor(case_histogram),
            decision_time: Family::new_with_constructor(case_histogram),
            backlog_pending: Family::default(),
            backlog_oldest: Family::default(),
            backlog_failed: Family::default(),
            backlog_blocked: Family::default(),
            backlog_failing: Family::default(),
            feed_problems: Family::default(),
            platform_calls: Family::default(),
            platform_durations: Family::new_with_constructor(call_histogram),
            platform_circuit_open: Gauge::default(),
            platform_circuit_opens: Counter::default(),
            platform_up: Gauge::default(),
            time_limits: crate::time_limits::TimeLimitGauges::new(registry),
            evaluations: crate::evaluation_metrics::EvaluationMetrics::new(registry),
            disputes: crate::dispute_metrics::DisputeMetrics::new(registry),
        };
        registry.register(
            names::CLIENT_CALLS,
            "Calls this node made through the gateway, by method, target province and gRPC code",
            m.client_calls.clone(),
        );
        registry.register(
            names::CLIENT_CALL_SECONDS,
            "Duration of calls this node made through the gateway, by method",
            m.client_durations.clone(),
        );
        registry.register(
            names::SERVER_CALLS,
            "Calls the gateway made on this node, by method, origin region and gRPC code",
            m.server_calls.clone(),
        );
        registry.register(
            names::SERVER_CALL_SECONDS,
            "Duration of calls the gateway made on this node, by method",
            m.server_durations.clone(),
        );
        registry.register(
            names::OUTBOX_ATTEMPTS,
            "Outbox attempts by kind and result (done, retry, refused)",
            m.outbox_attempts.clone(),
        );
        registry.register(
            names::FILINGS,
            "Applications filed here, by the applicant's home province and one-thing",
            m.filings.clone(),
        );
        registry.register(
            names::CASE_OUTCOMES,
            "Cases filed here by the applicant's home province, the handling province and outcome: accepted (acknowledged by the handling region), approved, rejected (decisions), refused (delivery refused for good)",
            m.outcomes.clone(),
        );
        registry.register(
            names::TIME_TO_FIRST_STATUS,
            "From filing to the handling region's acknowledgement, by the applicant's home province",
            m.first_status.clone(),
        );
        registry.register(
            names::TIME_TO_DECISION,
            "From filing to the decision (approved or rejected), by the applicant's home province",
            m.decision_time.clone(),
        );
        m.register_backlog(registry);
        m.register_platform(registry);
        m
    }

    /// The backlog gauges per target province, set at scrape time.
    fn register_backlog(&self, registry: &mut Registry) {
        registry.register(
            names::OUTBOX_PENDING,
            "Outbox entries not yet delivered, by target province",
            self.backlog_pending.clone(),
        );
        registry.register(
            names::OUTBOX_OLDEST_PENDING,
            "Age of the oldest undelivered outbox entry, by target province",
            self.backlog_oldest.clone(),
        );
        registry.register(
            names::OUTBOX_FAILED,
            "Outbox entries refused for good (dead letters), by target province",
            self.backlog_failed.clone(),
        );
        registry.register(
            names::OUTBOX_BLOCKED,
            "Pending outbox entries last refused for a configuration reason (a region not \
             registered, a certificate or registry mistake): they wait for an operator's fix, \
             by target province",
            self.backlog_blocked.clone(),
        );
        registry.register(
            names::OUTBOX_FAILING,
            "Pending outbox entries whose attempts so far all failed (waiting for a retry), by \
             target province",
            self.backlog_failing.clone(),
        );
    }

    /// The platform's metrics: its calls, circuit, health and feeds.
    fn register_platform(&self, registry: &mut Registry) {
        // The problems alerted on exist from the start, so their first increase shows.
        for (feed, problem) in [
            ("case_events", "unmapped_status"),
            ("case_events", "invalid_transition"),
        ] {
            let _ = self
                .feed_problems
                .get_or_create(&FeedProblemLabels { feed, problem });
        }
        registry.register(
            names::PLATFORM_FEED_PROBLEMS,
            "Problems in the platform's feeds, by feed (case_events, revocations) and problem: \
             unmapped_status (a status code [platform.status_codes] does not map: the feed \
             waits at it until the table is fixed), invalid_transition (a change the canonical \
             state machine forbids: skipped), not_issued_here (a revocation of a license \
             another region issued: skipped)",
            self.feed_problems.clone(),
        );
        registry.register(
            names::PLATFORM_CALLS,
            "Calls to the province's platform over HTTP, by operation and outcome: ok (answered \
             as the contract says), retried (an attempt that failed and was made again), failed \
             (unreachable, no answer in time, busy after every retry, or an unexpected answer), \
             circuit_open (refused without calling)",
            self.platform_calls.clone(),
        );
        registry.register(
            names::PLATFORM_CALL_SECONDS,
            "Duration of calls to the province's platform, retries included, by operation",
            self.platform_durations.clone(),
        );
        registry.register(
            names::PLATFORM_CIRCUIT_OPEN,
            "1 while the circuit in front of the province's platform is open (calls fail fast)",
            self.platform_circuit_open.clone(),
        );
        registry.register(
            names::PLATFORM_CIRCUIT_OPENS,
            "Times the circuit in front of the province's platform opened",
            self.platform_circuit_opens.clone(),
        );
        registry.register(
            names::PLATFORM_UP,
            "1 while the province's platform takes cases (the readiness check of it), read at \
             scrape time",
            self.platform_up.clone(),
        );
    }

    /// A call to the platform ended with `outcome`, after `elapsed` (`None` when it was
    /// not timed: a retried attempt, a call the circuit refused).
    pub fn platform_call(
        &self,
        operation: &'static str,
        outcome: &'static str,
        elapsed: Option<Duration>,
    ) {
        self.platform_calls
            .get_or_create(&PlatformCallLabels { operation, outcome })
            .inc();
        if let Some(elapsed) = elapsed {
            self.platform_durations
                .get_or_create(&OperationLabels { operation })
                .observe(elapsed.as_secs_f64());
        }
    }

    /// The circuit in front of the platform opened.
    pub fn platform_circuit_opened(&self) {
        self.platform_circuit_opens.inc();
        self.platform_circuit_open.set(1);
    }

    /// The circuit in front of the platform closed.
    pub fn platform_circuit_closed(&self) {
        self.platform_circuit_open.set(0);
    }

    /// Whether the platform takes cases (at scrape time).
    pub fn platform_up(&self, up: bool) {
        self.platform_up.set(i64::from(up));
    }

    /// A problem in what a platform feed reported.
    pub fn feed_problem(&self, feed: &'static str, problem: &'static str) {
        self.feed_problems
            .get_or_create(&FeedProblemLabels { feed, problem })
            .inc();
    }

    /// A call made through the gateway.
    pub fn client_call(
        &self,
        method: &'static str,
        target: &str,
        code: tonic::Code,
        elapsed: Duration,
    ) {
        self.client_calls
            .get_or_create(&ClientLabels {
                method,
                target: province(target),
                code: code_name(code),
            })
            .inc();
        self.client_durations
            .get_or_create(&MethodLabels { method })
            .observe(elapsed.as_secs_f64());
    }

    /// A call the gateway made on this node.
    pub fn server_call(
        &self,
        method: &'static str,
        origin: &str,
        code: tonic::Code,
        elapsed: Duration,
    ) {
        self.server_calls
            .get_or_create(&ServerLabels {
                method,
                origin: origin.to_owned(),
                code: code_name(code),
            })
            .inc();
        self.server_durations
            .get_or_create(&MethodLabels { method })
            .observe(elapsed.as_secs_f64());
    }

    /// One outbox attempt and how it went.
    pub fn outbox_attempt(&self, kind: OutboxKind, result: &'static str) {
        self.outbox_attempts
            .get_or_create(&AttemptLabels {
                kind: kind.as_str(),
                result,
            })
            .inc();
    }

    /// An application filed here by an applicant of `home` (an ID number or province).
    pub fn filed(&self, home: &str, one_thing: &str) {
        self.filings
            .get_or_create(&FilingLabels {
                home_region: province(home),
                one_thing: one_thing.to_owned(),
            })
            .inc();
    }

    /// The handling region acknowledged a case filed `age` ago.
    pub fn accepted(&self, home: &str, handling: &str, age: Duration) {
        self.outcome(home, handling, "accepted");
        self.first_status
            .get_or_create(&HomeLabels {
                home_region: province(home),
            })
            .observe(age.as_secs_f64());
    }

    /// The delivery of a case was refused for good.
    pub fn refused(&self, home: &str, handling: &str) {
        self.outcome(home, handling, "refused");
    }

    fn outcome(&self, home: &str, handling: &str, outcome: &'static str) {
        self.outcomes
            .get_or_create(&OutcomeLabels {
                home_region: province(home),
                handling_region: province(handling),
                outcome,
            })
            .inc();
    }

    /// A status was applied to a case filed here: decisions are counted.
    pub fn status_applied(&self, record: &ApplicationRecord, status: &CaseStatus) {
        let outcome = match Stage::try_from(status.stage) {
            Ok(Stage::Approved) => "approved",
            Ok(Stage::Rejected) => "rejected",
            _ => return,
        };
        self.outcome(&record.applicant_masked, &record.target_region, outcome);
        let age_ms = crate::store::now_ms()
            .saturating_sub(record.created_ms)
            .max(0);
        self.decision_time
            .get_or_create(&HomeLabels {
                home_region: province(&record.applicant_masked),
            })
            .observe(age_ms as f64 / 1000.0);
    }

    /// Reads the outbox backlog into the gauges (at scrape time).
    pub async fn refresh_backlog(&self, store: &Store) -> Result<(), StoreError> {
        let rows = store.outbox_backlog().await?;
        let now = crate::store::now_ms();
        let mut by_province: BTreeMap<String, BacklogRow> = BTreeMap::new();
        for row in rows {
            let entry = by_province
                .entry(province(&row.target_region))
                .or_insert_with(|| BacklogRow {
                    oldest_pending_ms: i64::MAX,
                    ..BacklogRow::default()
                });
            entry.pending += row.pending;
            entry.blocked += row.blocked;
            entry.failing += row.failing;
            entry.dead += row.dead;
            if row.pending > 0 {
                entry.oldest_pending_ms = entry.oldest_pending_ms.min(row.oldest_pending_ms);
            }
        }
        self.backlog_pending.clear();
        self.backlog_oldest.clear();
        self.backlog_failed.clear();
        self.backlog_blocked.clear();
        self.backlog_failing.clear();
        for (target, row) in by_province {
            let labels = BacklogLabels { target };
            self.backlog_pending.get_or_create(&labels).set(row.pending);
            self.backlog_failed.get_or_create(&labels).set(row.dead);
            self.backlog_blocked.get_or_create(&labels).set(row.blocked);
            self.backlog_failing.get_or_create(&labels).set(row.failing);
            let age = if row.pending > 0 {
                (now.saturating_sub(row.oldest_pending_ms)).max(0) as f64 / 1000.0
            } else {
                0.0
            };
            self.backlog_oldest.get_or_create(&labels).set(age);
        }
        Ok(())
    }
}

/// `/metrics` on the admin listener: the backlog gauges and the open cases' time limits
/// are read from the store first, and whether the platform is up from its health.
pub fn route(
    registry: std::sync::Arc<Registry>,
    metrics: Option<std::sync::Arc<NodeMetrics>>,
    store: Store,
    platform: std::sync::Arc<dyn Platform>,
    calendar: crate::calendar::NodeCalendar,
) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let (registry, metrics, store) = (registry.clone(), metrics.clone(), store.clone());
            let (platform, calendar) = (platform.clone(), calendar.clone());
            async move {
                if let Some(metrics) = &metrics {
                    metrics.platform_up(platform.health().is_ok());
                    if let Err(error) = metrics.refresh_backlog(&store).await {
                        tracing::warn!(%error, "metrics: outbox backlog unreadable");
                    }
                    let today = tongban_proto::rules::calendar::business_now().date();
                    let limits = metrics.time_limits.refresh(&store, &calendar, today);
                    if let Err(error) = limits.await {
                        tracing::warn!(%error, "metrics: open cases unreadable");
                    }
                    if let Err(error) = metrics.disputes.refresh(&store).await {
                        tracing::warn!(%error, "metrics: open disputes unreadable");
                    }
                }
                tongban_runtime::serving::admin::metrics_response(&registry)
            }
        }),
    )
}

/// Applies a status to a case filed here and counts it if it is a decision; returns
/// whether it was applied (newer than what was stored).
pub async fn apply_status(
    store: &Store,
    metrics: Option<&NodeMetrics>,
    report: StatusReport,
) -> Result<bool, StoreError> {
    let case_number = report.case_number.clone();
    let applied = store.apply_status(report).await?;
    if applied.decided
        && let Some(metrics) = metrics
        && let Some(record) = store.application(case_number).await?
    {
        metrics.status_applied(&record, &record.status);
    }
    Ok(applied.applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provinces_of_codes_and_masked_numbers() {
        assert_eq!(province("440305"), "44");
        assert_eq!(province("4403**********0011"), "44");
        assert_eq!(province(""), "");
        assert_eq!(province("x"), "");
    }
}
