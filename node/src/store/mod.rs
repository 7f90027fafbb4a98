//! The node's durable store, on SQLite (one node process) or PostgreSQL (several
//! replicas of the node sharing one database).
//!
//! A filing is written with its receipt and — when another region handles it — its
//! outbox entry in one transaction, so an acknowledged application survives a crash of
//! the node and is forwarded after restart. Deliveries received are remembered by
//! idempotency key so a replay creates nothing new.
//!
//! Callers hold a [`Store`] (`handle`), which hands each call to its backend: `sqlite`
//! (`SqliteStore`) or `postgres` (`PgStore`), each with its own schema and one
//! submodule per job. What the backends share lives beside them, one module per job:
//! `settings`, `access_log` (lookups of this region's persons' data), `filing`
//! (applications filed here), `evidence` (what other regions signed about a case), `outbox` (calls owed to other regions) — their types and
//! the rules both backends follow — with instants kept as `crate::instants` says. `tests`
//! checks that both backends behave alike.

mod access_log;
pub mod disputes;
pub mod evaluations;
mod evidence;
mod filing;
mod handle;
mod outbox;
mod postgres;
mod settings;
mod sqlite;
#[cfg(test)]
mod tests;
mod turn;

pub use crate::db_error::StoreError;
pub use crate::instants::{now_ms, timestamp_ms};
pub use access_log::{AccessConsent, AccessEntry, AccessKind, NewAccess, ReportedAccess};
pub use evidence::SignedEvidence;
pub use filing::{
    ApplicationRecord, Filed, NewFiling, OPEN_STAGES, OpenPromise, StatusApplied, StatusReport,
};
pub use handle::Store;
pub use outbox::{
    BacklogRow, DeadLetter, DeadLetterAction, OutboxEntry, OutboxKind, revocation_key,
};
pub use turn::Turn;
