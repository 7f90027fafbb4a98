//! Named points where a test makes the node die as a crash would, to prove what
//! survives one: the process aborts (no unwinding, no flush, no drain, no `Drop`). A
//! point fires when the environment variable `TONGBAN_CRASH_AT` names it; the variable
//! is read once.
//!
//! Not the `fail` crate: its actions are panics, returns and sleeps, which a tokio
//! task or `catch_unwind` contains; a crash is the whole process vanishing.

use std::sync::OnceLock;

/// The environment variable naming the point to crash at.
pub const CRASH_AT: &str = "TONGBAN_CRASH_AT";

/// At a delivery: the platform has taken the case, the delivery's idempotency key is
/// not recorded yet (they are two databases).
pub const AFTER_PLATFORM_SUBMIT: &str = "after-platform-submit";

/// At a revocation: the register has revoked the license, its publication is not
/// queued yet (they are two databases).
pub const AFTER_REGISTER_REVOKE: &str = "after-register-revoke";

/// Aborts the process if `TONGBAN_CRASH_AT` names `point`.
pub fn crash_point(point: &'static str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    if AT.get_or_init(|| std::env::var(CRASH_AT).ok()).as_deref() == Some(point) {
        eprintln!("tongban-node: {CRASH_AT}={point}: aborting as a crash would");
        std::process::abort();
    }
}
