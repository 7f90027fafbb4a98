//! A Tongban provincial node.
//!
//! - [`portal`]: the local portal API (HTTP+JSON) where citizens and counters file
//!   applications and read their status.
//! - [`intake`]: pre-review of a filing (ID number, catalog form), the receipt, and the
//!   decision of the handling region.
//! - [`store`]: the node's durable SQLite store: applications, receipts, the outbox and
//!   the idempotency keys of deliveries received.
//! - [`sqlite`]: the SQLite connection both the store and the embedded platform use.
//! - [`forwarder`]: drains the outbox through the gateway with retries, so whatever was
//!   acknowledged reaches its handling region.
//! - [`federation`]: the `Node` gRPC service the gateway calls (deliveries, status).
//! - [`platform`]: the adapter to the province's own platform; [`platform::embedded`]
//!   is the default SQLite one.
//! - [`catalog`]: the node's copy of the national catalog; [`context`]: what the
//!   handlers share.
//! - [`server`] assembles it all; [`config`] is the operator's file.

pub mod catalog;
pub mod config;
pub mod context;
pub mod error;
pub mod federation;
pub mod forwarder;
pub mod gateway_client;
pub mod intake;
pub mod platform;
pub mod portal;
pub mod portal_client;
pub mod server;
pub mod sqlite;
pub mod store;

pub use config::NodeConfig;
pub use server::{Node, NodeListeners};
