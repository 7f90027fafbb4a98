//! The names of a node's metrics: the node registers them and the gateway's console,
//! the `tongban backlog` command, the alert rules and the dashboard read them, so they
//! are part of the contract between those parts, written once here. A counter is
//! registered under its base name and scraped with `_total` added (prometheus-client
//! does that): both forms are given.

pub const CLIENT_CALLS: &str = "tongban_node_client_calls";
pub const CLIENT_CALL_SECONDS: &str = "tongban_node_client_call_duration_seconds";
pub const SERVER_CALLS: &str = "tongban_node_server_calls";
pub const SERVER_CALL_SECONDS: &str = "tongban_node_server_call_duration_seconds";
pub const OUTBOX_ATTEMPTS: &str = "tongban_node_outbox_attempts";
pub const FILINGS: &str = "tongban_node_filings";
pub const FILINGS_TOTAL: &str = "tongban_node_filings_total";
pub const CASE_OUTCOMES: &str = "tongban_node_case_outcomes";
pub const CASE_OUTCOMES_TOTAL: &str = "tongban_node_case_outcomes_total";
pub const TIME_TO_FIRST_STATUS: &str = "tongban_node_time_to_first_status_seconds";
pub const TIME_TO_DECISION: &str = "tongban_node_time_to_decision_seconds";
pub const OUTBOX_PENDING: &str = "tongban_node_outbox_pending";
pub const OUTBOX_OLDEST_PENDING: &str = "tongban_node_outbox_oldest_pending_seconds";
pub const OUTBOX_FAILED: &str = "tongban_node_outbox_failed";
pub const OUTBOX_BLOCKED: &str = "tongban_node_outbox_blocked";
pub const OUTBOX_FAILING: &str = "tongban_node_outbox_failing";
/// Problems in what the platform's feeds reported, by feed and problem
/// (`unmapped_status`: a configuration error; `invalid_transition`: a platform's bug).
pub const PLATFORM_FEED_PROBLEMS: &str = "tongban_node_platform_feed_problems";
pub const PLATFORM_FEED_PROBLEMS_TOTAL: &str = "tongban_node_platform_feed_problems_total";
/// Calls to a province's platform over HTTP, by operation and outcome (`ok`, `retried`:
/// an attempt that failed and was made again, `failed`, `circuit_open`).
pub const PLATFORM_CALLS: &str = "tongban_node_platform_calls";
pub const PLATFORM_CALLS_TOTAL: &str = "tongban_node_platform_calls_total";
pub const PLATFORM_CALL_SECONDS: &str = "tongban_node_platform_call_duration_seconds";
/// 1 while the circuit in front of the platform is open (calls fail fast).
pub const PLATFORM_CIRCUIT_OPEN: &str = "tongban_node_platform_circuit_open";
/// Times the circuit opened.
pub const PLATFORM_CIRCUIT_OPENS: &str = "tongban_node_platform_circuit_opens";
pub const PLATFORM_CIRCUIT_OPENS_TOTAL: &str = "tongban_node_platform_circuit_opens_total";
/// 1 while the platform takes cases (the node's readiness check of it), read at scrape
/// time, whatever the platform's kind.
pub const PLATFORM_UP: &str = "tongban_node_platform_up";
/// Open cases filed here (not yet decided) by handling province and one-thing, read at
/// scrape time: due within [`DUE_SOON_WORKING_DAYS`] working days of the handling
/// region's calendar, and past their promised date.
pub const CASES_DUE_SOON: &str = "tongban_node_cases_due_soon";
pub const CASES_OVERDUE: &str = "tongban_node_cases_overdue";
/// Working days left at most for a case to count as due soon.
pub const DUE_SOON_WORKING_DAYS: i64 = 2;
/// Citizens' evaluations of cases filed at a node, by handling province, one-thing and
/// level (`very_satisfied` … `very_dissatisfied`): counted once, where filed.
pub const EVALUATIONS: &str = "tongban_node_evaluations";
pub const EVALUATIONS_TOTAL: &str = "tongban_node_evaluations_total";
/// Follow-ups of poor evaluations opened at the handling region's node.
pub const FOLLOW_UPS: &str = "tongban_node_follow_ups_opened";
pub const FOLLOW_UPS_TOTAL: &str = "tongban_node_follow_ups_opened_total";
/// Days from today through the last day the official calendar has a schedule for.
pub const CALENDAR_COVERED_DAYS: &str = "tongban_node_calendar_covered_days";
/// Filings whose promised date was left empty (no schedule for a year it reaches).
pub const PROMISED_DATES_UNKNOWN: &str = "tongban_node_promised_dates_unknown";
pub const PROMISED_DATES_UNKNOWN_TOTAL: &str = "tongban_node_promised_dates_unknown_total";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scraped_counter_names_are_the_registered_ones_with_total() {
        assert_eq!(FILINGS_TOTAL, format!("{FILINGS}_total"));
        assert_eq!(CASE_OUTCOMES_TOTAL, format!("{CASE_OUTCOMES}_total"));
        assert_eq!(
            PLATFORM_FEED_PROBLEMS_TOTAL,
            format!("{PLATFORM_FEED_PROBLEMS}_total")
        );
        assert_eq!(PLATFORM_CALLS_TOTAL, format!("{PLATFORM_CALLS}_total"));
        assert_eq!(
            PLATFORM_CIRCUIT_OPENS_TOTAL,
            format!("{PLATFORM_CIRCUIT_OPENS}_total")
        );
    }
}
