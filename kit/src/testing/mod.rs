//! For tests: a whole federation on loopback in one call, in a folder removed on drop
//! ([`harness`]); gRPC clients that present any identity (or a foreign CA's) and
//! stand-in peers ([`peers`]); clients that sign as a region's node ([`signing`]); a valid filing and the system tools some tests drive
//! ([`fixtures`]); waiting for a condition ([`poll`]).
//!
//! These panic on a failed set-up (a failed set-up is a failed test); the rest of the
//! kit returns [`crate::error::KitError`].

pub mod fixtures;
pub mod harness;
pub mod peers;
pub mod poll;
pub mod signing;

pub use fixtures::{featured_medical_item, medical_filing, system_tool};
pub use harness::{TestFederation, cli_binary, processes, start, start_with};
pub use peers::{channel, foreign_identity, health_server, region_channel, tls12_server};
pub use poll::eventually;
pub use signing::{RegionSigner, SigningChannel};
