//! Identity verification and electronic-license mutual recognition: the one place the
//! gateway decodes messages. A lookup is routed to the region that can answer it (the
//! applicant's home region, a license's issuing region), its signed answer checked
//! against the registry's keys for that region, judged against the mutual-recognition
//! catalog, and cached so that an applicant from any region is answered as fast as a
//! local one.
//!
//! - `service`: decodes a call and hands it to its lookup; fail closed.
//! - One file per lookup: `identity` (`VerifyIdentity`), `license` (`LookupLicense`,
//!   and the license judgement the holder list reuses), `holder_list` (`ListLicenses`),
//!   `revocation` (`PublishRevocation`; who may revoke is `crate::authorize`'s).
//! - `revocation_log`: the log of revocations every replica follows (PostgreSQL), when
//!   configured: written before a revocation is acknowledged, applied from by all.
//! - `lookup`: what every lookup shares — the service's state and cached entries,
//!   routing by content, cache keys, the issuer call, refusal and verdict helpers.
//! - `verify`: the checks behind every verdict (key, window, signature, subject,
//!   issuer, validity), as plain functions.
//! - `cache`: the caches, bounded by bytes, their keys (keyed hashes) and counters.
//! - `footprint`: the bytes entries and issuers' answers hold, estimated, and the
//!   charges a lookup's call is given for them.
//! - `revoked`: the revoked licenses remembered, each charged to the member that
//!   published it (a ceiling and a rate per member; never forgotten early).
//! - `issuer`: the unary call to an issuing node.
//! - `voucher` and `trust`: each entry's registry generation and signing key; what a
//!   registry change drops, and the check on read for lookups racing the change.

pub mod access_reports;
pub mod cache;
mod data_label;
mod footprint;
mod holder_list;
mod identity;
mod issuer;
mod license;
mod lookup;
mod revocation;
pub mod revocation_log;
pub mod revoked;
mod service;
#[cfg(test)]
mod tests;
mod trust;
mod verify;
mod voucher;

pub use lookup::Recognition;
pub use service::Bounds;
pub use verify::{Refusal, check_assertion, check_license};
