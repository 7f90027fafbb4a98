//! The Tongban national gateway.
//!
//! A relayed call's life (composed in [`relay`], one module per phase, each a plain
//! function over a [`call::Call`]): [`authenticate`] (certificate → caller region) →
//! [`authorize`] (may the caller make this call, as the origin it claims?) →
//! [`admission`] (is there room for it, within its region's share?) → [`route`]
//! (target region → node pool, longest prefix wins) → [`forward`] (relay the message as
//! bytes over [`upstream`], which [`ejection`] tells what counts against a node) →
//! [`audit`]; [`trace`] spans the whole call and [`metrics`] counts it. [`methods`] is
//! the table of every method and its policy; [`carve_outs`] tells nodes which codes
//! inside a caller's region belong to other members; [`deadline`] bounds each call;
//! [`error`] chooses every gRPC status code the gateway itself produces, and whether the
//! caller may retry. Every "who may do what" decision is [`authorize`]'s, also those of the
//! gateway's own services and of revocations.
//!
//! The mutual-recognition lookups (identity, licenses, revocations) are the one kind of
//! call the gateway decodes: [`recognition`] routes, verifies, caches and judges them;
//! [`unary`] frames their messages.
//!
//! [`connection`] is the HTTP/2 server: it turns streams into calls and [`answer`]s into
//! frames, and nothing else; [`coalesced_writes`] gathers what h2 writes on either kind of
//! connection into one TLS record per flush; [`catalog`] serves the national one-thing catalog (and records its featured items' publications and adoptions);
//! [`server`] assembles the listeners; [`config`] and [`registry`] are the operator's
//! files; [`keepalive`] pings both kinds of connection; [`console`] is the operator's
//! page on the admin port.

pub mod admission;
pub mod admission_metrics;
pub mod answer;
pub mod audit;
pub mod authenticate;
pub mod authorize;
pub mod call;
pub mod carve_outs;
pub mod catalog;
pub mod coalesced_writes;
pub mod config;
pub mod connection;
pub mod console;
pub mod deadline;
pub mod ejection;
pub mod error;
pub mod forward;
pub mod keepalive;
pub mod membership;
pub mod message;
pub mod methods;
pub mod metrics;
pub mod recognition;
pub mod registry;
pub mod relay;
pub mod reload;
pub mod route;
pub mod saturation;
pub mod server;
pub mod sharing;
pub mod stream_gate;
#[cfg(test)]
mod test_support;
pub mod trace;
pub mod unary;
pub mod upstream;

pub use config::GatewayConfig;
pub use server::{Gateway, GatewayListeners};
