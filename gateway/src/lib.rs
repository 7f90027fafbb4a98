//! The Tongban national gateway.
//!
//! A relayed call's life, one module per phase (composed in [`relay`]):
//! [`authenticate`] (certificate → caller identity) → [`authorize`] (may the caller act
//! for the origin it claims?) → [`route`] (target region → node pool, longest prefix
//! wins) → [`forward`] (relay the message as bytes over [`upstream`]) → [`audit`].
//!
//! [`connection`] serves HTTP/2 on each authenticated connection and hands relayed calls
//! to [`relay`]; [`catalog`] serves the national one-thing catalog; [`server`] assembles
//! the listeners;
//! [`config`] and [`registry`] are the operator's files; [`error`] chooses every gRPC
//! status code the gateway itself produces.

pub mod audit;
pub mod authenticate;
pub mod authorize;
pub mod catalog;
pub mod config;
pub mod connection;
pub mod error;
pub mod forward;
pub mod message;
pub mod registry;
pub mod relay;
pub mod route;
pub mod server;
pub mod upstream;

pub use config::GatewayConfig;
pub use server::{Gateway, GatewayListeners};
