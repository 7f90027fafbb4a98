//! The national one-thing catalog the gateway serves: the one configured (or built
//! in), with the featured items regions published and adopted through the gateway
//! (一地创新、全国复用) replayed over it from the catalog ledger.
//!
//! - `ledger`: the records, and the ledger file of a lone gateway (`catalog_ledger`),
//!   appended and synced before a change is answered.
//! - `shared`: the ledger of replicas that share a database (`[revocation_log]`): a
//!   change made through one is served by all, within a poll interval — or at once to
//!   a node that names the newer version it already has.
//! - `service`: the `Catalog` gRPC service (fetch, publish, adopt).
//! - `metrics`: how far into the ledger a replica is, and the changes asked for.
//! - `source`: the catalog in force and how a change or a catch-up replaces it.
//!
//! Every reader (the service, the mutual-recognition lookups, the console) takes the
//! catalog in force with one read of [`CatalogSource::current`]; a change swaps it
//! whole, under the ledger's lock, so changes are applied one at a time and in the
//! ledger's order.

pub mod ledger;
mod metrics;
pub mod service;
pub mod shared;
mod source;

pub use source::{CatalogChangeError, CatalogSource, CatalogStartError, Changed, Served};
