//! The embedded platform: cases, persons and licenses in a SQLite file, with a
//! simulated clerk. It lets a province without its own platform API, a demo or a test
//! run a complete node.
//!
//! `database` holds the handle and schema; `cases` the [`Platform`](super::Platform)
//! side (cases and the clerk); `licenses` the [`LicenseRegistry`](super::LicenseRegistry)
//! side (persons, the licenses issued here, seeding); `feed` the ordered feeds of
//! status changes and revocations; `synthetic` the synthetic
//! residents that demos and tests use.

mod cases;
mod database;
mod feed;
mod licenses;
mod synthetic;

pub use database::EmbeddedPlatform;
pub use licenses::NewLicense;
pub use synthetic::{SyntheticResident, synthetic_residents};
