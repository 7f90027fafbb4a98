//! The node's HTTP adapter to a province's own platform, over the published
//! [contract](super::contract), composed as a call's path runs:
//!
//! - `config` (`[platform] kind = "http"`), `tls` (the client's TLS, and errors that name
//!   the wrong certificate or CA), `auth` (bearer token, HMAC signature);
//! - `adapter`: [`HttpPlatform`], what the node holds; `cases` its
//!   [`Platform`](super::Platform) side, `register` its
//!   [`LicenseRegistry`](super::LicenseRegistry) side, both translating through
//!   `mapping` (the node's types ↔ the contract's bodies, status codes through the
//!   province's table);
//! - `transport`: one call whole — the `circuit` asked, each attempt carrying the
//!   contract's headers and signed anew, failed attempts `retry`-ed with backoff, the
//!   outcome kept in `health` (what readiness reads) and recorded by
//!   `crate::observe::platform`.

pub mod adapter;
pub mod auth;
pub mod cases;
pub mod circuit;
pub mod config;
pub mod health;
pub mod mapping;
pub mod register;
pub mod retry;
pub mod tls;
pub mod transport;

#[cfg(test)]
mod tests;

pub use adapter::HttpPlatform;
pub use config::{HttpPlatformConfig, PlatformAuth, PlatformTls};
pub use transport::SetupError;
