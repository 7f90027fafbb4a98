//! Backup and restore of a node's state: the store (applications, receipts, outbox,
//! idempotency keys, the keyed-hash secret) and, when the node runs the embedded
//! platform, its register, which that secret keys — one without the other is useless
//! (see `crate::platform::embedded::KeyBindingError`), so they travel together.
//!
//! Each kind uses its database's own tool: SQLite's online backup API (a consistent
//! copy while the node writes), PostgreSQL's `pg_dump` / `pg_restore` (`sqlite` and
//! `postgres` here). A backup is a folder with a `manifest.json` naming what it holds
//! and the fingerprint of the secret, checked again after a restore.

mod error;
mod manifest;
mod node_state;
mod postgres;
mod sqlite;

pub use error::BackupError;
pub use manifest::{MANIFEST, Manifest, read_manifest};
pub use node_state::{backup, restore};
pub use postgres::PgTools;
