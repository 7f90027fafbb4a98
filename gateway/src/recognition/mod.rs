//! Identity verification and electronic-license mutual recognition: the one place the
//! gateway decodes messages. A lookup is routed to the region that can answer it (the
//! applicant's home region, a license's issuing region), its signed answer checked
//! against the registry's keys for that region, judged against the mutual-recognition
//! catalog, and cached so that an applicant from any region is answered as fast as a
//! local one.
//!
//! - `service`: the lookups, in order: decode, route, revocations, cache, verify,
//!   verdict; fail closed.
//! - `verify`: the checks behind every verdict (key, window, signature, subject,
//!   issuer, validity), as plain functions.
//! - `cache`: the bounded caches, their keys (keyed hashes) and counters.
//! - `issuer`: the unary call to an issuing node.

mod cache;
mod issuer;
mod service;
mod verify;

pub use service::Recognition;
pub use verify::{Refusal, check_assertion, check_license};
