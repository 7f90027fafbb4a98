//! The embedded platform's handle and database schema.

use std::sync::Arc;

use tokio::sync::Notify;
use tongban_proto::rules::region::RegionPrefix;

use crate::sqlite::{Db, StoreError};

/// The platform database's schema history, oldest first (see [`crate::sqlite`]).
/// Append a step to change the schema; never edit one. Step 1 is the schema from before
/// versioning, verbatim: `IF NOT EXISTS` lets it adopt databases made then.
pub(super) const MIGRATIONS: &[&str] = &[
    MIGRATION_1,
    MIGRATION_2,
    MIGRATION_3,
    MIGRATION_4,
    MIGRATION_5,
];

const MIGRATION_1: &str = r#"
CREATE TABLE IF NOT EXISTS residents (
    id_hash     TEXT PRIMARY KEY,
    id_masked   TEXT NOT NULL,
    name        TEXT NOT NULL,
    home_region TEXT NOT NULL,
    birth_date  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS licenses (
    license_number TEXT PRIMARY KEY,
    license_type   TEXT NOT NULL,
    holder_hash    TEXT NOT NULL REFERENCES residents (id_hash),
    issuer_region  TEXT NOT NULL,
    issued_on      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cases (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    case_number    TEXT NOT NULL UNIQUE,
    one_thing_id   TEXT NOT NULL,
    origin_region  TEXT NOT NULL,
    applicant_hash TEXT NOT NULL,
    payload        BLOB NOT NULL,
    stage          INTEGER NOT NULL,
    detail         TEXT NOT NULL,
    sequence       INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL,
    received_ms    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS cases_open ON cases (stage, updated_ms);
CREATE INDEX IF NOT EXISTS cases_updated ON cases (updated_ms);
"#;

/// Step 2: the register as an issuer of electronic licenses: what each license states,
/// its validity and revocation, and each person's assurance level.
const MIGRATION_2: &str = r#"
ALTER TABLE residents ADD COLUMN level INTEGER NOT NULL DEFAULT 2;
ALTER TABLE licenses ADD COLUMN holder_name_masked TEXT NOT NULL DEFAULT '';
ALTER TABLE licenses ADD COLUMN fields TEXT NOT NULL DEFAULT '{}';
ALTER TABLE licenses ADD COLUMN valid_from TEXT NOT NULL DEFAULT '';
ALTER TABLE licenses ADD COLUMN valid_until TEXT;
ALTER TABLE licenses ADD COLUMN issued_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE licenses ADD COLUMN revoked_ms INTEGER;
ALTER TABLE licenses ADD COLUMN revoke_reason TEXT;
CREATE INDEX IF NOT EXISTS licenses_holder ON licenses (holder_hash);
"#;

/// Step 3: the platform as the contract describes it: every status change in an
/// ordered feed (with the stage it left, so a follower checks the transition), every
/// revocation in a feed, and the ID number of each person (the reference platform
/// answers lookups by it). Changes from before this step are not replayed into the feed:
/// a node upgrading follows from here.
const MIGRATION_3: &str = r#"
ALTER TABLE residents ADD COLUMN id_number TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS residents_id_number ON residents (id_number);
CREATE TABLE IF NOT EXISTS case_events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    case_number    TEXT NOT NULL,
    previous_stage INTEGER,
    stage          INTEGER NOT NULL,
    detail         TEXT NOT NULL,
    sequence       INTEGER NOT NULL,
    at_ms          INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS revocation_log (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    license_number TEXT NOT NULL UNIQUE,
    reason         TEXT NOT NULL,
    revoked_ms     INTEGER NOT NULL
);
"#;

/// Step 4: the reference platform records the purpose of use (用证事由) of every
/// register call, as provincial license-sharing services must: who asked about whom for
/// which one-thing and case. The subject is the masked ID number or the license id,
/// never a plain ID number. Also the index the clerk's queue of open cases reads.
const MIGRATION_4: &str = r#"
CREATE TABLE IF NOT EXISTS purpose_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms       INTEGER NOT NULL,
    operation   TEXT NOT NULL,
    one_thing   TEXT NOT NULL,
    case_number TEXT NOT NULL,
    subject     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cases_received ON cases (stage, received_ms);
"#;

/// Step 5: the register remembers which keyed-hash secret its ID-number hashes were made
/// with (a fingerprint, never the secret), so a node whose store was restored without
/// its register, or the other way round, refuses to start instead of finding nobody.
const MIGRATION_5: &str = r#"
CREATE TABLE IF NOT EXISTS register_settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#;

/// The embedded SQLite platform.
pub struct EmbeddedPlatform {
    pub(super) db: Db,
    pub(super) prefix: String,
    /// Woken after every status change, so the node reads the feed at once.
    pub(super) changed: Arc<Notify>,
}

impl EmbeddedPlatform {
    /// Opens the platform database with only the first steps of its schema (tests make
    /// databases as older releases did).
    #[cfg(test)]
    pub(super) fn open_with(
        path: &std::path::Path,
        prefix: &RegionPrefix,
        migrations: &[&str],
    ) -> Result<Arc<Self>, StoreError> {
        Ok(Arc::new(Self {
            db: Db::open(path, migrations)?,
            prefix: prefix.as_str().to_owned(),
            changed: Arc::new(Notify::new()),
        }))
    }

    /// Opens (creating) the platform database.
    pub fn open(path: &std::path::Path, prefix: &RegionPrefix) -> Result<Arc<Self>, StoreError> {
        Ok(Arc::new(Self {
            db: Db::open(path, MIGRATIONS)?,
            prefix: prefix.as_str().to_owned(),
            changed: Arc::new(Notify::new()),
        }))
    }
}
