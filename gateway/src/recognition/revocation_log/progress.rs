//! How far this replica has followed the log, and since when it could not: what its
//! readiness and its metrics say.
//!
//! - `tongban_gateway_revocation_log_sequence`: the last sequence number applied;
//! - `tongban_gateway_revocation_log_applied_total`: revocations applied from the log;
//! - `tongban_gateway_revocation_log_read_failures_total`: reads of the log that failed;
//! - `tongban_gateway_revocation_log_append_failures_total`: revocations refused
//!   (UNAVAILABLE) because the log could not be written;
//! - `tongban_gateway_revocation_log_last_read_timestamp_seconds`: when the log was
//!   last read to its end (alert on `time() - it`).

use std::{
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

/// The names this module registers, and as a scrape shows them.
pub const SEQUENCE: &str = "tongban_gateway_revocation_log_sequence";
pub const APPLIED: &str = "tongban_gateway_revocation_log_applied";
pub const APPLIED_TOTAL: &str = "tongban_gateway_revocation_log_applied_total";
pub const READ_FAILURES: &str = "tongban_gateway_revocation_log_read_failures";
pub const READ_FAILURES_TOTAL: &str = "tongban_gateway_revocation_log_read_failures_total";
pub const APPEND_FAILURES: &str = "tongban_gateway_revocation_log_append_failures";
pub const APPEND_FAILURES_TOTAL: &str = "tongban_gateway_revocation_log_append_failures_total";
pub const LAST_READ: &str = "tongban_gateway_revocation_log_last_read_timestamp_seconds";

/// What the follower has done so far.
#[derive(Default)]
struct State {
    /// The whole log was read once (until then this replica knows too little).
    loaded: bool,
    /// When the log was last read to its end.
    last_read: Option<Instant>,
    last_seq: u64,
    /// Why reading fails, while it does.
    failing: Option<String>,
}

/// The follower's progress, shared with the readiness probe and the scrape.
pub struct LogProgress {
    /// The log as readiness and logs name it (no password).
    name: String,
    max_staleness: Duration,
    state: Mutex<State>,
    sequence: Gauge,
    applied: Counter,
    read_failures: Counter,
    append_failures: Counter,
    last_read: Gauge,
}

impl LogProgress {
    /// Progress of following the log called `name`, its metrics registered in
    /// `registry`.
    pub fn new(name: String, max_staleness: Duration, registry: &mut Registry) -> Self {
        let progress = Self {
            name,
            max_staleness,
            state: Mutex::default(),
            sequence: Gauge::default(),
            applied: Counter::default(),
            read_failures: Counter::default(),
            append_failures: Counter::default(),
            last_read: Gauge::default(),
        };
        registry.register(
            SEQUENCE,
            "Sequence number of the last revocation this replica applied from the shared revocation log",
            progress.sequence.clone(),
        );
        registry.register(
            APPLIED,
            "Revocations this replica applied from the shared revocation log",
            progress.applied.clone(),
        );
        registry.register(
            READ_FAILURES,
            "Reads of the shared revocation log that failed",
            progress.read_failures.clone(),
        );
        registry.register(
            APPEND_FAILURES,
            "Revocations refused because the shared revocation log could not be written",
            progress.append_failures.clone(),
        );
        registry.register(
            LAST_READ,
            "When this replica last read the shared revocation log to its end (Unix time)",
            progress.last_read.clone(),
        );
        progress
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain values, consistent after any panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rows up to `last_seq` were applied, `rows` of them.
    pub fn applied(&self, rows: usize, last_seq: u64) {
        self.applied.inc_by(rows as u64);
        self.sequence
            .set(i64::try_from(last_seq).unwrap_or(i64::MAX));
        self.state().last_seq = last_seq;
    }

    /// The log was read to its end.
    pub fn caught_up(&self) {
        let mut state = self.state();
        if !state.loaded {
            tracing::info!(log = %self.name, sequence = state.last_seq, "revocation log loaded");
        }
        if let Some(error) = state.failing.take() {
            tracing::info!(log = %self.name, %error, "revocation log readable again");
        }
        state.loaded = true;
        state.last_read = Some(Instant::now());
        let unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_read.set(i64::try_from(unix).unwrap_or(i64::MAX));
    }

    /// Reading (or preparing) the log failed.
    pub fn read_failed(&self, error: &dyn std::fmt::Display) {
        self.read_failures.inc();
        let error = error.to_string();
        let mut state = self.state();
        // Once per outage: the follower retries every poll interval.
        if state.failing.is_none() {
            tracing::warn!(log = %self.name, %error, "revocation log cannot be read; retrying");
        }
        state.failing = Some(error);
    }

    /// An append failed (the revocation was refused).
    pub fn append_failed(&self) {
        self.append_failures.inc();
    }

    /// The last sequence number applied.
    pub fn last_seq(&self) -> u64 {
        self.state().last_seq
    }

    /// Whether this replica may answer as one that knows every revocation: the log was
    /// loaded, and read to its end within `max_staleness`.
    pub fn check(&self) -> Result<(), String> {
        let state = self.state();
        let why = state
            .failing
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        let Some(last_read) = state.last_read.filter(|_| state.loaded) else {
            return Err(format!("{} not loaded yet{why}", self.name));
        };
        let unread = last_read.elapsed();
        if unread > self.max_staleness {
            return Err(format!(
                "{} not read for {}s (at most {}s){why}",
                self.name,
                unread.as_secs(),
                self.max_staleness.as_secs_f64()
            ));
        }
        Ok(())
    }
}
