//! A Tongban provincial node.
//!
//! - [`portal`]: the local portal API (HTTP+JSON) where citizens and counters file
//!   applications and read their status (with the receipt's token, [`receipt_token`]),
//!   and citizens their access log ([`access_inquiry`]: the portal's proof, a rate per
//!   person; [`access_reports`] records what the gateway answered from its cache);
//!   [`portal_client`] is a small client for it.
//! - [`filing`]: a filing at the portal, phase by phase (check against the catalog and
//!   the shared rule set, recognition through the federation, composition of
//!   application and receipt, the durable write, a resumed pre-review).
//! - [`store`]: the node's durable store, on SQLite (one process) or PostgreSQL (several
//!   replicas): applications, receipts, the outbox and the idempotency keys of
//!   deliveries received; [`backup`] copies and restores it with the register its
//!   keyed-hash secret keys.
//! - [`sqlite`]: the SQLite connection and versioned schema migrations that both the
//!   store and the embedded platform use.
//! - [`instants`]: instants as the databases keep them (Unix milliseconds); [`db_error`]:
//!   what a database call fails with, on either kind of store.
//! - [`forwarder`]: drains the outbox through the gateway with retries, so whatever was
//!   acknowledged reaches its handling region; [`gateway_client`] is its client,
//!   [`gateway_replicas`] the channels to the gateway replicas and the balance over them.
//! - [`federation`]: the `Node` gRPC service the gateway calls (deliveries, status,
//!   lookups); [`delivery`] takes a delivered application, step by step; [`issuer`]
//!   signs what this region vouches for (identity assertions, licenses) and records who
//!   asked; [`error`] maps its failures to gRPC statuses.
//! - [`observe`]: the one place the node records what it did: spans, metrics, audit
//!   records and log lines of filings, served calls, outbox attempts and client calls.
//! - [`feed_turn`]: one replica at a time follows a platform feed.
//! - [`status_return`]: returns status changes of cases handled here to the region that
//!   filed them (属地返还).
//! - [`platform`]: the adapter to the province's own platform; [`platform::embedded`]
//!   is the default SQLite one, [`platform::http`] a province's own over the published
//!   contract; [`province_platform`] opens the one configured.
//! - [`revocations`]: revocations of licenses issued here published to every gateway
//!   replica, from the operator's route or the platform's feed.
//! - [`catalog_copy`]: the node's copy of the national catalog; [`context`]: what the
//!   handlers share.
//! - [`operator`]: the operator endpoints on the operator listener (license revocation,
//!   the outbox's dead letters: list, replay, close);
//!   [`metrics`]: what the admin listener's `/metrics` serves, fairness by home region
//!   included.
//! - [`server`] assembles it all; [`config`] is the operator's file.
//! - [`audit`]: the node's audit trail of what it accepted and handed over.
//! - [`crash_point`]: named points where a fault test makes the process abort.
//! - [`verified_origin`]: the calling region the gateway verified, and the codes it owns.

pub mod access_inquiry;
pub mod access_reports;
pub mod audit;
pub mod backup;
pub mod calendar;
pub mod catalog_copy;
pub mod config;
pub mod context;
pub mod crash_point;
pub mod db_error;
pub mod delivery;
pub mod dispute_metrics;
pub mod disputes;
pub mod error;
pub mod evaluation;
pub mod evaluation_config;
pub mod evaluation_metrics;
pub mod federation;
pub mod feed_turn;
pub mod filing;
pub mod forwarder;
pub mod gateway_client;
pub mod gateway_replicas;
pub mod in_force;
pub mod instants;
pub mod issuer;
pub mod issuer_keys;
pub mod joint;
pub mod metrics;
pub mod observe;
pub mod operator;
pub mod operator_catalog;
pub mod operator_disputes;
pub mod peers;
pub mod platform;
pub mod portal;
pub mod portal_client;
pub mod portal_errors;
pub mod province_platform;
pub mod receipt_token;
pub mod reloaded;
pub mod requirements;
pub mod revocations;
pub mod server;
pub mod signed_calls;
pub mod sqlite;
pub mod status_return;
pub mod store;
pub mod time_limits;
pub mod verified_origin;

pub use config::NodeConfig;
pub use server::{Node, NodeListeners};
