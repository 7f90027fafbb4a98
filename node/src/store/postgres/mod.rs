//! The store on PostgreSQL, which several replicas of one region's node share:
//! [`PgStore`] and its schema (`schema`). Each job adds its own `impl PgStore` methods
//! in a submodule, as [`crate::store`] describes them: the methods of
//! [`crate::store::Store`] of the same names, whose docs say what they do; the docs
//! here add what sharing the database changes.
//!
//! What makes sharing safe: replicas claim outbox entries with a lease (`outbox`), and
//! every write that two replicas may make at once is an upsert or `ON CONFLICT DO
//! NOTHING` (case numbers, idempotency keys, the keyed-hash secret). A write to the
//! outbox notifies [`OUTBOX_CHANNEL`] on commit, which wakes the replicas' forwarders
//! sooner than their poll.

mod access_log;
mod database;
mod disputes;
mod evaluations;
mod evidence;
mod filing;
mod inbound;
mod outbox;
mod schema;
mod settings;
mod status;
#[cfg(test)]
pub(super) mod test_server;
#[cfg(test)]
mod tests;
mod turn;

pub use database::PgStore;
pub use turn::PgTurn;
