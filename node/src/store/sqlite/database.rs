//! The SQLite store's handle, opened and checked; what its job files share.

use std::path::Path;

use super::schema::MIGRATIONS;
use crate::sqlite::{Db, StoreError};

/// The node's store in one SQLite file, for one node process.
#[derive(Clone)]
pub struct SqliteStore {
    pub(super) db: Db,
}

impl SqliteStore {
    /// Opens or creates the store.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, MIGRATIONS)
    }

    /// `Err` with the reason while the database is failing (see
    /// [`crate::sqlite::Db::health`]).
    pub fn health(&self) -> Result<(), String> {
        self.db.health()
    }

    /// Opens the store with only the first steps of its schema (tests make databases
    /// as older releases did).
    pub(super) fn open_with(path: &Path, migrations: &[&str]) -> Result<Self, StoreError> {
        Ok(Self {
            db: Db::open(path, migrations)?,
        })
    }
}
