//! One check while it runs: the calls it made, kept for the report (the first few; a
//! feed read page by page would drown the rest), and how it ended.

use super::report::{CheckId, CheckResult, Exchange, Verdict};

/// Calls listed per check; the rest are counted.
pub const SHOWN_EXCHANGES: usize = 8;

/// A check in progress.
pub struct Step {
    id: CheckId,
    exchanges: Vec<Exchange>,
    more: usize,
}

impl Step {
    pub fn new(id: CheckId) -> Self {
        Self {
            id,
            exchanges: Vec::new(),
            more: 0,
        }
    }

    pub fn id(&self) -> CheckId {
        self.id
    }

    /// Keeps a call for the report.
    pub fn record(&mut self, exchange: Exchange) {
        if self.exchanges.len() < SHOWN_EXCHANGES {
            self.exchanges.push(exchange);
        } else {
            self.more += 1;
        }
    }

    /// The check's result.
    pub fn finish(self, verdict: Verdict) -> CheckResult {
        CheckResult::new(self.id, verdict, self.exchanges, self.more)
    }
}
