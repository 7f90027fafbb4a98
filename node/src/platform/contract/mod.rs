//! The platform contract: what a province's platform serves so that a node can stand in
//! front of it over HTTP/JSON. The node's HTTP adapter ([`super::http`]) is its client,
//! the reference platform ([`super::reference`]) a running implementation, and the
//! conformance kit ([`super::conformance`]) checks a province's implementation of it.
//!
//! - [`wire`]: the JSON bodies, one type per body, with the OpenAPI schema derived from
//!   them so the published document cannot drift from the code;
//! - [`status`]: the one canonical case state machine and the table that maps a
//!   province's own status codes onto it;
//! - [`headers`]: what every call carries (idempotency key, case number, trace context,
//!   purpose of use) and the HMAC request signature;
//! - [`redact`]: ID and phone numbers masked out of free text a platform wrote;
//! - [`openapi`]: the OpenAPI 3.1 document (`proto/platform/v1/openapi.json`).

pub mod headers;
pub mod openapi;
pub mod redact;
pub mod status;
pub mod wire;
