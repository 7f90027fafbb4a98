//! The store on SQLite (WAL, `synchronous=FULL`), the embedded kind for one node
//! process: [`SqliteStore`] and its schema (`schema`). Each job adds its own
//! `impl SqliteStore` methods in a submodule, as [`crate::store`] describes them: the
//! methods of [`crate::store::Store`] of the same names, whose docs say what they do.

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
mod tests;

pub use database::SqliteStore;
