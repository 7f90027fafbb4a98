//! The adapter between a node and its province's government-service platform.
//!
//! The node stays the same whatever the platform: the embedded SQLite one
//! ([`embedded`]) by default, or a province's own platform over HTTP ([`http`]), which
//! implements the published [`contract`]; [`reference`] serves the embedded platform
//! over that contract as a process of its own, with a clerk's API and import. Two
//! traits, since a province often runs them as two systems:
//! - [`Platform`] takes over cases delivered to this region, reports their status, and
//!   announces the status changes its clerks make so the node can return them to the
//!   filing region;
//! - [`LicenseRegistry`] is the region's register of persons and of the electronic
//!   licenses (电子证照) it issued: what the node signs when another region asks.
//!
//! Each trait and its types live in a file of their own (`adapter.rs`, `register.rs`),
//! so an implementation (`embedded/`) names them there, not in this file.

pub mod adapter;
pub mod conformance;
pub mod contract;
pub mod embedded;
pub mod http;
pub mod reference;
pub mod register;

pub use adapter::{CaseEvent, EventPage, Platform, PlatformCase, PlatformError, Submitted};
pub use register::{
    LicenseRecord, LicenseRegistry, Person, PlatformRevocation, Purpose, RevocationPage, Subject,
};
