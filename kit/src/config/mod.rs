//! The config writers everyone uses — the launcher, the demo, the tests and the
//! benchmark: the PKI layout ([`pki`]), gateway and registry configs ([`gateway`]), node
//! configs ([`node`]), and how they are written ([`files`]).
//!
//! Configs name their files relative to the folder they are written in (the config
//! path rule of `tongban_runtime::process::config`), so a generated folder can be moved,
//! read and run by hand.

pub mod files;
pub mod gateway;
pub mod node;
pub mod pki;
pub mod platform;
