//! The embedded platform: cases, persons and licenses in a SQLite file. It lets a
//! province without its own platform API, a demo or a test run a complete node, and it
//! is what the reference platform (`super::reference`) serves over the contract.
//!
//! `database` holds the handle and schema; `cases` the [`Platform`](super::Platform)
//! side (cases, and the timed clerk that approves by itself, for demos); `clerk` a
//! clerk's queue and decisions, checked against the canonical state machine;
//! `licenses` the [`LicenseRegistry`](super::LicenseRegistry) side (persons, the
//! licenses issued here, seeding); `lookup` the register by ID number and the purpose
//! of use of each lookup; `import` (with `import_read`, `import_rows`) residents and
//! licenses from files, all or nothing; `feed` the ordered feeds of status changes and revocations;
//! `synthetic` the synthetic residents that demos and tests use; `key_binding` the
//! check that the register's hashes and the node's keyed-hash secret belong together.

mod cases;
mod clerk;
mod database;
mod feed;
mod import;
mod import_read;
mod import_rows;
mod key_binding;
mod licenses;
mod lookup;
mod synthetic;

pub use clerk::{ClerkAction, ClerkCase, DecisionError, MAX_REASON_CHARS};
pub use database::EmbeddedPlatform;
pub use import::{ImportError, ImportFiles, ImportSummary};
pub use import_read::{ImportFormat, MAX_PROBLEMS, RowAt, RowProblem};
pub use import_rows::id_problem;
pub use key_binding::{KeyBindingError, fingerprint};
pub use licenses::NewLicense;
pub use lookup::{level_name, rfc3339_ms};
pub use synthetic::{SyntheticResident, synthetic_residents};
