//! What a conformance run found: the numbered checks, each with its outcome, the reason
//! in one sentence, and the calls it made (what was sent, what came back); rendered as
//! text for a person and as JSON for a machine.

use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;

/// The checks, by their stable number. Numbers and keys never change meaning; a new
/// check gets a new number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CheckId {
    Tls,
    Health,
    Authentication,
    TakeOver,
    RepeatTakeOver,
    Conflict,
    ReadCase,
    FeedOrder,
    FeedPaging,
    FeedResumption,
    StatusCodes,
    Revocations,
    BadRequests,
    Timing,
}

impl CheckId {
    pub const ALL: [Self; 14] = [
        Self::Tls,
        Self::Health,
        Self::Authentication,
        Self::TakeOver,
        Self::RepeatTakeOver,
        Self::Conflict,
        Self::ReadCase,
        Self::FeedOrder,
        Self::FeedPaging,
        Self::FeedResumption,
        Self::StatusCodes,
        Self::Revocations,
        Self::BadRequests,
        Self::Timing,
    ];

    /// The check's number, 1 to 14.
    pub fn number(self) -> u8 {
        match self {
            Self::Tls => 1,
            Self::Health => 2,
            Self::Authentication => 3,
            Self::TakeOver => 4,
            Self::RepeatTakeOver => 5,
            Self::Conflict => 6,
            Self::ReadCase => 7,
            Self::FeedOrder => 8,
            Self::FeedPaging => 9,
            Self::FeedResumption => 10,
            Self::StatusCodes => 11,
            Self::Revocations => 12,
            Self::BadRequests => 13,
            Self::Timing => 14,
        }
    }

    /// The check by its number.
    pub fn from_number(number: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.number() == number)
    }

    /// A short stable name, for machines and for `grep`.
    pub fn key(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::Health => "health",
            Self::Authentication => "authentication",
            Self::TakeOver => "take-over",
            Self::RepeatTakeOver => "repeat-take-over",
            Self::Conflict => "conflict",
            Self::ReadCase => "read-case",
            Self::FeedOrder => "feed-order",
            Self::FeedPaging => "feed-paging",
            Self::FeedResumption => "feed-resumption",
            Self::StatusCodes => "status-codes",
            Self::Revocations => "revocations",
            Self::BadRequests => "bad-requests",
            Self::Timing => "timing",
        }
    }

    /// What the check shows when it passes.
    pub fn title(self) -> &'static str {
        match self {
            Self::Tls => "TLS handshake with the platform",
            Self::Health => "health answers ok",
            Self::Authentication => "calls without valid credentials are refused",
            Self::TakeOver => "take-over creates a case",
            Self::RepeatTakeOver => "a repeated take-over creates nothing (idempotent)",
            Self::Conflict => "a changed payload under the same case number is a conflict",
            Self::ReadCase => "a case reads back; an unknown case is not found",
            Self::FeedOrder => "case events in the order made, each transition allowed",
            Self::FeedPaging => "the case-event feed pages without loss or repetition",
            Self::FeedResumption => "the case-event feed resumes exactly after a cursor",
            Self::StatusCodes => "every status code in the feed is mapped",
            Self::Revocations => "the revocation feed is ordered, paged and shows revocations",
            Self::BadRequests => "bad requests get precise errors",
            Self::Timing => "every answer within the timeout",
        }
    }
}

/// `1 page`, `3 pages`: a count with its noun, for reasons.
pub fn counted(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// How a check ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    /// Not run: it does not apply, or what it needs could not be had.
    Skip,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Skip => "SKIP",
        }
    }
}

/// A check's outcome with its reason in one sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Outcome,
    pub reason: String,
}

impl Verdict {
    pub fn pass(reason: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Pass,
            reason: reason.into(),
        }
    }

    pub fn fail(reason: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Fail,
            reason: reason.into(),
        }
    }

    pub fn skip(reason: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Skip,
            reason: reason.into(),
        }
    }

    /// Fails naming every fault, or passes with `reason` when there is none.
    pub fn from_faults(faults: &[String], reason: impl Into<String>) -> Self {
        if faults.is_empty() {
            Self::pass(reason)
        } else {
            Self::fail(faults.join("; "))
        }
    }
}

/// What a call sent. Secrets are never kept (only the names of the headers that carry
/// them); personal data is masked.
#[derive(Clone, Debug, Serialize)]
pub struct Sent {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// The contract's headers that matter to a reader (idempotency key, case number,
    /// purpose, authentication with its secret redacted).
    pub headers: BTreeMap<String, String>,
    /// What the body held, described (personal data masked), when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// What came back: an answer, or why there was none.
#[derive(Clone, Debug, Serialize)]
pub struct Received {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub content_type: String,
    /// The start of the body, personal data masked.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub excerpt: String,
    /// Why no answer came (TLS, connection, timeout), in a sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub latency_ms: u64,
}

/// One call a check made.
#[derive(Clone, Debug, Serialize)]
pub struct Exchange {
    /// The contract's operation (`take_over`, `case_events`, …).
    pub operation: &'static str,
    pub sent: Sent,
    pub received: Received,
}

/// One check's result.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    #[serde(skip)]
    pub check: CheckId,
    pub id: u8,
    pub key: &'static str,
    pub title: &'static str,
    pub outcome: Outcome,
    pub reason: String,
    /// The calls it made (the first few, when there were many).
    pub exchanges: Vec<Exchange>,
    /// How many further calls were made and not listed.
    #[serde(skip_serializing_if = "is_zero")]
    pub more_exchanges: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl CheckResult {
    pub fn new(check: CheckId, verdict: Verdict, exchanges: Vec<Exchange>, more: usize) -> Self {
        Self {
            check,
            id: check.number(),
            key: check.key(),
            title: check.title(),
            outcome: verdict.outcome,
            reason: verdict.reason,
            exchanges,
            more_exchanges: more,
        }
    }
}

/// A whole run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The platform's base URL.
    pub url: String,
    /// When the run started, RFC 3339.
    pub started_at: String,
    /// The longest wait for one answer.
    pub timeout_ms: u64,
    pub checks: Vec<CheckResult>,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Report {
    pub fn new(url: String, started_at: String, timeout_ms: u64, checks: Vec<CheckResult>) -> Self {
        let count = |o: Outcome| checks.iter().filter(|c| c.outcome == o).count();
        Self {
            passed: count(Outcome::Pass),
            failed: count(Outcome::Fail),
            skipped: count(Outcome::Skip),
            url,
            started_at,
            timeout_ms,
            checks,
        }
    }

    /// True when no check failed (skipped ones allowed).
    pub fn all_passed(&self) -> bool {
        self.failed == 0
    }

    /// The checks that failed.
    pub fn failed_checks(&self) -> Vec<CheckId> {
        self.with_outcome(Outcome::Fail)
    }

    pub fn with_outcome(&self, outcome: Outcome) -> Vec<CheckId> {
        self.checks
            .iter()
            .filter(|c| c.outcome == outcome)
            .map(|c| c.check)
            .collect()
    }

    /// The result of one check.
    pub fn check(&self, id: CheckId) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.check == id)
    }

    /// `14 checks: 12 passed, 1 failed, 1 skipped`.
    pub fn summary(&self) -> String {
        format!(
            "{} checks: {} passed, {} failed, {} skipped",
            self.checks.len(),
            self.passed,
            self.failed,
            self.skipped
        )
    }

    /// The report as JSON, pretty-printed.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The report as text: one block per check, then the summary line.
    pub fn render_text(&self) -> String {
        let mut out = format!(
            "Tongban platform conformance: {} (started {}, timeout {} ms)\n\n",
            self.url, self.started_at, self.timeout_ms
        );
        for check in &self.checks {
            render_check(&mut out, check);
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }
}

fn render_check(out: &mut String, check: &CheckResult) {
    let _ = writeln!(
        out,
        "[{:>2}] {} {}",
        check.id,
        check.outcome.label(),
        check.title
    );
    let _ = writeln!(out, "     {}", check.reason);
    for exchange in &check.exchanges {
        let sent = &exchange.sent;
        let _ = writeln!(out, "     → {} {}", sent.method, sent.path);
        if !sent.headers.is_empty() {
            let headers: Vec<String> = sent
                .headers
                .iter()
                .map(|(name, value)| format!("{name}: {value}"))
                .collect();
            let _ = writeln!(out, "         {}", headers.join(", "));
        }
        if let Some(body) = &sent.body {
            let _ = writeln!(out, "         body: {body}");
        }
        let received = &exchange.received;
        match (received.status, &received.error) {
            (Some(status), _) => {
                let _ = writeln!(
                    out,
                    "     ← {status} {} in {} ms: {}",
                    if received.content_type.is_empty() {
                        "(no content type)"
                    } else {
                        &received.content_type
                    },
                    received.latency_ms,
                    received.excerpt
                );
            }
            (None, error) => {
                let _ = writeln!(
                    out,
                    "     ← no answer after {} ms: {}",
                    received.latency_ms,
                    error.as_deref().unwrap_or("unknown error")
                );
            }
        }
    }
    if check.more_exchanges > 0 {
        let _ = writeln!(out, "     (+{} more calls not shown)", check.more_exchanges);
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_keys_are_stable_and_distinct() {
        let numbers: Vec<u8> = CheckId::ALL.iter().map(|c| c.number()).collect();
        assert_eq!(numbers, (1..=14).collect::<Vec<u8>>());
        for id in CheckId::ALL {
            assert_eq!(CheckId::from_number(id.number()), Some(id));
        }
        let keys: std::collections::BTreeSet<_> = CheckId::ALL.iter().map(|c| c.key()).collect();
        assert_eq!(keys.len(), 14);
    }

    #[test]
    fn the_text_has_a_block_per_check_and_a_summary() {
        let exchange = Exchange {
            operation: "health",
            sent: Sent {
                method: "GET".into(),
                path: "/v1/health".into(),
                headers: BTreeMap::new(),
                body: None,
            },
            received: Received {
                status: Some(200),
                content_type: "application/json".into(),
                excerpt: r#"{"status":"ok"}"#.into(),
                error: None,
                latency_ms: 3,
            },
        };
        let checks = vec![
            CheckResult::new(CheckId::Tls, Verdict::pass("handshake done"), vec![], 0),
            CheckResult::new(
                CheckId::Health,
                Verdict::fail("answered 503"),
                vec![exchange],
                2,
            ),
            CheckResult::new(
                CheckId::Authentication,
                Verdict::skip("no credentials"),
                vec![],
                0,
            ),
        ];
        let report = Report::new("https://p".into(), "now".into(), 5000, checks);
        let text = report.render_text();
        assert!(text.contains("[ 1] PASS TLS handshake"), "{text}");
        assert!(text.contains("[ 2] FAIL health answers ok"), "{text}");
        assert!(text.contains("← 200 application/json in 3 ms"), "{text}");
        assert!(text.contains("(+2 more calls not shown)"), "{text}");
        assert!(
            text.ends_with("3 checks: 1 passed, 1 failed, 1 skipped\n"),
            "{text}"
        );
        assert_eq!(report.failed_checks(), vec![CheckId::Health]);
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["checks"][1]["outcome"], "fail");
        assert_eq!(json["checks"][1]["key"], "health");
    }
}
